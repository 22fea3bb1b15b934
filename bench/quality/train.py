"""Train one arm with TRL: optional RoPE extension, then stages of SFT (prompt/completion) or LM (text) rows.

`python -m bench.quality.train ARM.json` where the file holds `{"base": MODEL_DIR, "out": DIR, "rope_theta": null
or a number, "max_positions": null or a number, "stages": [{"data": FILE.jsonl, "steps": N, "max_length": L,
"lr": X}, ...]}`. A stage's rows are either `{"prompt": [...], "completion": [...]}` (loss on the completion
only) or `{"text": ...}` (loss on every token). Every stage runs exactly `steps` optimizer steps of
`batch` rows (accumulated one row at a time: no padding, no packing across rows), so arms with the same
settings spend the same compute. An optional `"deadline"` (epoch seconds) ends stages early, each at its share
of the time left; `steps_done` in the log says where each stage stopped. The trained model is saved as a
Hugging Face folder at `out`, with `train_log.json` (loss per logged step, tokens, seconds) beside it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def set_rope(config: Any, rope_theta: float | None, max_positions: int | None) -> None:
    """Raise the RoPE base and the position limit in `config` (both the old and the new config layouts)."""
    if rope_theta:
        params = getattr(config, "rope_parameters", None)
        if isinstance(params, dict):
            params["rope_theta"] = float(rope_theta)
        if hasattr(config, "rope_theta") or not isinstance(params, dict):
            config.rope_theta = float(rope_theta)
    if max_positions:
        config.max_position_embeddings = int(max_positions)


def load_model(base: str, rope_theta: float | None, max_positions: int | None, device: str) -> tuple[Any, Any]:
    """The base model (bf16 on a GPU, fp32 on CPU) with its tokenizer, RoPE changed as asked."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(base)
    set_rope(config, rope_theta, max_positions)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, config=config, dtype=dtype, attn_implementation="sdpa")
    return model, AutoTokenizer.from_pretrained(base)


def deadline_callback(deadline: float | None) -> Any:
    """A callback that ends training (the model is still saved) once the clock passes `deadline`."""
    from transformers import TrainerCallback

    class Deadline(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if deadline is not None and time.time() > deadline:
                control.should_training_stop = True
            return control

    return Deadline()


def run_stage(model: Any, tokenizer: Any, stage: dict[str, Any], work: Path, batch: int, device: str,
              deadline: float | None = None) -> dict[str, Any]:
    """One stage of training, ended early at `deadline` if it comes first; returns its log."""
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    data = load_dataset("json", data_files=stage["data"], split="train")
    args = SFTConfig(
        output_dir=str(work), max_steps=int(stage["steps"]), per_device_train_batch_size=1,
        gradient_accumulation_steps=batch, learning_rate=float(stage.get("lr", 5e-5)),
        lr_scheduler_type="cosine", warmup_steps=max(1, int(stage["steps"]) // 20), weight_decay=0.0,
        max_length=int(stage["max_length"]), packing=False, bf16=device == "cuda", use_cpu=device == "cpu",
        logging_steps=max(1, int(stage["steps"]) // 20), save_strategy="no", report_to=[], seed=0,
        dataset_num_proc=4 if device == "cuda" else None, gradient_checkpointing=False,
        dataloader_num_workers=0, shuffle_dataset=True,
    )
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=data, args=args,
                         callbacks=[deadline_callback(deadline)])
    started = time.time()
    result = trainer.train()
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    return {"data": stage["data"], "steps": int(stage["steps"]), "steps_done": trainer.state.global_step,
            "rows": len(data), "dataset_tokens": tokens,
            "max_length": int(stage["max_length"]), "seconds": round(time.time() - started, 1),
            "train_loss": round(float(result.training_loss), 4),
            "log": [{k: v for k, v in e.items() if k in ("step", "loss", "learning_rate")}
                    for e in trainer.state.log_history if "loss" in e]}


def train(plan: dict[str, Any], device: str | None = None) -> dict[str, Any]:
    """Run every stage of `plan` on one model and save it to `plan['out']`."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(plan["out"])
    model, tokenizer = load_model(plan["base"], plan.get("rope_theta"), plan.get("max_positions"), device)
    logs = []
    deadline = plan.get("deadline")
    weights = [int(s["steps"]) * int(s["max_length"]) for s in plan["stages"]]
    for i, stage in enumerate(plan["stages"]):
        # each stage gets its share of the time left, by steps x length, so a slow first stage cannot starve the last
        share = None if deadline is None else time.time() + (deadline - time.time()) * weights[i] / sum(weights[i:])
        logs.append(run_stage(model, tokenizer, stage, out.parent / f".work-{out.name}-{i}", int(plan.get("batch", 8)),
                              device, share))
        print(json.dumps({"arm": out.name, "stage": i, **{k: v for k, v in logs[-1].items() if k != "log"}}),
              flush=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {"plan": plan, "stages": logs}
    (out / "train_log.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> None:
    """Train the arm described by the JSON file given as the only argument."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m bench.quality.train ARM.json")
    train(json.loads(Path(argv[0]).read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
