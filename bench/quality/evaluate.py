"""Score one model on the probe file: greedy answers through vLLM (GPU) or transformers (CPU, small models).

`python -m bench.quality.evaluate MODEL_DIR PROBES.jsonl OUT.json [--engine vllm|hf] [--gpu-share 0.12]`
writes the per-cell summary (see `scoring.summarise`) and every answer next to it (`OUT.answers.jsonl`).
Prompts are one user turn rendered with the model's own chat template; answers are at most 64 tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.quality.scoring import summarise

MAX_NEW_TOKENS = 64


def load_items(path: Path) -> list[dict[str, Any]]:
    """Probe items from JSONL."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def rendered(tokenizer: Any, items: list[dict[str, Any]]) -> list[str]:
    """Each item's prompt as the model's chat template renders one user turn, ready for the answer."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": it["prompt"]}], tokenize=False,
                                          add_generation_prompt=True) for it in items]


def answer_vllm(model: str, texts: list[str], gpu_share: float, max_len: int) -> list[str]:
    """Greedy answers from vLLM (prefix caching on: the probes share no long prefixes, so it costs nothing)."""
    import os

    os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")  # the untuned model's config says 8,192
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, max_model_len=max_len, gpu_memory_utilization=gpu_share, enforce_eager=True,
              seed=0, max_num_seqs=256)
    params = SamplingParams(temperature=0.0, max_tokens=MAX_NEW_TOKENS)
    outputs = llm.generate(texts, params, use_tqdm=False)
    answers = [o.outputs[0].text for o in outputs]
    llm.llm_engine.engine_core.shutdown() if hasattr(llm.llm_engine, "engine_core") else None
    return answers


def answer_hf(model: str, texts: list[str]) -> list[str]:
    """Greedy answers from transformers, one prompt at a time (for tests on small models)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model)
    lm.eval()
    out = []
    with torch.no_grad():
        for text in texts:
            ids = tok(text, return_tensors="pt", add_special_tokens=False)
            gen = lm.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                              pad_token_id=tok.pad_token_id or tok.eos_token_id)
            out.append(tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return out


def evaluate(model: str, probes: Path, out: Path, engine: str = "vllm", gpu_share: float = 0.12,
             max_len: int = 16384 + 512) -> dict[str, Any]:
    """Answer and score every probe item; write the summary and the answers."""
    from transformers import AutoTokenizer

    items = load_items(probes)
    texts = rendered(AutoTokenizer.from_pretrained(model), items)
    started = time.time()
    answers = answer_vllm(model, texts, gpu_share, max_len) if engine == "vllm" else answer_hf(model, texts)
    outputs = {it["id"]: a for it, a in zip(items, answers, strict=False)}
    summary = {"model": model, "engine": engine, "items": len(items), "seconds": round(time.time() - started, 1),
               **summarise(items, outputs)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    with out.with_suffix(".answers.jsonl").open("w", encoding="utf-8") as f:
        for it, a in zip(items, answers, strict=False):
            f.write(json.dumps({"id": it["id"], "answer": a, "gold": it["answers"]}, ensure_ascii=False) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command line: model folder, probe file, output JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.quality.evaluate")
    parser.add_argument("model")
    parser.add_argument("probes", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--engine", choices=("vllm", "hf"), default="vllm")
    parser.add_argument("--gpu-share", type=float, default=0.12)
    args = parser.parse_args(argv)
    summary = evaluate(args.model, args.probes, args.out, args.engine, args.gpu_share)
    print(json.dumps({k: summary[k] for k in ("model", "seconds", "avg_4k_8k", "avg_16k", "short")}), flush=True)


if __name__ == "__main__":
    main()
