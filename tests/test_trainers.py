"""The trainer proof: TRL's SFT, DPO and GRPO trainers take one optimizer step each on `lcsynth export --to trl`
files, loaded with `datasets.load_dataset("parquet", ...)` as they are, with a tiny randomly initialised Llama
and a tokenizer trained here (nothing is downloaded; the Hub is switched off).

The rows come from real runs: SFT (LongMagpie) and DPO (LongPO) through the scripted backend (a fake model),
GRPO (KeyChain) and pretraining rows (Untie-the-Knots) by construction with no model. The length limits given to
the trainers are the ones `lcsynth check --tokenizer` reports for this tokenizer, so no row is cut.
"""

import asyncio
import copy
import json
import subprocess
import sys

import pytest
from test_construct import construct
from test_longpo import answers
from test_longpo import run as longpo_run
from test_pipeline import corpus, numbered_reply, recipe
from tiny_lm import tiny_llama, train_tokenizer

from lcsynth.out.export import over_limit, trainer_tokenizer
from lcsynth.rewards import grpo_reward
from lcsynth.run.local import run_recipe

pytestmark = pytest.mark.trainer


def cli(*args):
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def exported(run_dir, kind):
    """`lcsynth export --to trl`, then the file loaded as it is."""
    import datasets

    done = cli("export", run_dir, "--to", "trl")
    assert done.returncode == 0, done.stderr
    return datasets.load_dataset("parquet", data_files=str(run_dir / f"export/trl/{kind}/train.parquet"),
                                 split="train")


def longest(run_dir, kind, tokenizer_dir):
    """The longest row of a run in the trainer's tokens, as `lcsynth check --tokenizer` counts it."""
    over, counted, longest = over_limit(run_dir, 0, trainer_tokenizer(str(tokenizer_dir)))[kind]
    assert over == counted > 0
    return longest


def texts_of(value):
    """Every string inside a row (messages, answers, text), for training the tokenizer."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts_of(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts_of(v)]
    return []


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No request may leave the machine: the Hub client is offline and its endpoint is a closed loopback port."""
    import huggingface_hub.constants

    for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf_home"),
                        "HF_DATASETS_CACHE": str(tmp_path / "datasets_cache")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def step(trainer):
    """Run the trainer's one step; return its loss after checking that the weights moved."""
    import torch

    before = [p.detach().clone() for p in trainer.model.parameters()]
    result = trainer.train()
    assert trainer.state.global_step == 1 and torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, trainer.model.parameters(), strict=True))
    return result.training_loss


def test_trl_trainers_take_a_step_on_exported_rows(tmp_path, scripted, offline):
    from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    texts = [f"The doc says item{i}. " * 20 for i in range(4)]
    sft_run = asyncio.run(run_recipe(recipe(corpus(tmp_path, texts), output={"name": "sft"}),
                                     scripted(numbered_reply), show_progress=False)).run_dir
    dpo_run = longpo_run(tmp_path, scripted, answers("The span says dumps writes JSON text.",
                                                     "The whole page lists many functions."), "dpo")[0].run_dir
    grpo_run = construct(tmp_path, {"name": "keychain", "qa": "demo", "max_items": 2,  # the other item: decoys
                                    "lengths": {"targets": ["2k"]}}, name="grpo", limits={"max_records": 1})[0].run_dir
    pretrain_run = construct(tmp_path, {"name": "untie_knots", "lengths": {"targets": ["2k"]}, "tracing_rows": 0},
                             name="pretrain", limits={"max_records": 2})[0].run_dir
    data = {"sft": exported(sft_run, "sft"), "dpo": exported(dpo_run, "dpo"), "grpo": exported(grpo_run, "grpo"),
            "pretrain": exported(pretrain_run, "pretrain")}
    assert {k: len(v) for k, v in data.items()} == {k: sum(json.loads((r / "manifest.json").read_text())["counts"][
        "rows"].values()) for k, r in (("sft", sft_run), ("dpo", dpo_run), ("grpo", grpo_run),
                                       ("pretrain", pretrain_run))}

    # The tokenizer: BPE over the rows, plus one token for the boxed answer of the GRPO row and one filler word.
    (gold,) = {row["ground_truth"][0] for row in data["grpo"]}
    answer_token, filler = "\\boxed{" + gold + "}", " hmm"
    corpus_texts = [t for rows in data.values() for row in rows for t in texts_of(row)]
    tokenizer = train_tokenizer(corpus_texts, tmp_path / "tok", vocab_size=2000, extra=[answer_token, filler])
    limits = {kind: longest(run, kind, tmp_path / "tok") for kind, run in
              (("sft", sft_run), ("dpo", dpo_run), ("grpo", grpo_run), ("pretrain", pretrain_run))}
    positions = max(limits.values()) + 64
    common = {"max_steps": 1, "report_to": [], "use_cpu": True, "per_device_train_batch_size": 2,
              "learning_rate": 1e-2, "save_strategy": "no", "disable_tqdm": True, "seed": 0}

    sft = SFTTrainer(model=tiny_llama(tokenizer, positions), processing_class=tokenizer, train_dataset=data["sft"],
                     args=SFTConfig(output_dir=str(tmp_path / "o_sft"), max_length=limits["sft"], **common))
    assert max(len(ids) for ids in sft.train_dataset["input_ids"]) == limits["sft"]  # counted as the trainer does
    step(sft)

    pretrain = SFTTrainer(model=tiny_llama(tokenizer, positions), processing_class=tokenizer,
                          train_dataset=data["pretrain"],
                          args=SFTConfig(output_dir=str(tmp_path / "o_pre"), max_length=limits["pretrain"] + 1,
                                         **common))
    assert max(len(ids) for ids in pretrain.train_dataset["input_ids"]) == limits["pretrain"] + 1  # + end of text
    step(pretrain)

    model = tiny_llama(tokenizer, positions)
    dpo = DPOTrainer(model=model, ref_model=copy.deepcopy(model), processing_class=tokenizer,
                     train_dataset=data["dpo"],
                     args=DPOConfig(output_dir=str(tmp_path / "o_dpo"), max_length=limits["dpo"], **common))
    assert max(len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"]))
               for r in dpo.train_dataset) == limits["dpo"]
    step(dpo)

    # The random model cannot answer, so generation is limited to three choices (the boxed gold answer, a filler
    # word, or end of turn): a policy right about half the time, so rewards differ within the group.
    scored = []

    def reward(completions, ground_truth, **kwargs):
        scores = grpo_reward(completions, ground_truth, **kwargs)
        scored.extend(zip(scores, ground_truth, strict=True))
        return scores

    allowed = {tokenizer.convert_tokens_to_ids(answer_token), tokenizer.convert_tokens_to_ids(filler),
               tokenizer.eos_token_id}
    grpo = GRPOTrainer(model=tiny_llama(tokenizer, positions), reward_funcs=[reward], processing_class=tokenizer,
                       train_dataset=data["grpo"],
                       args=GRPOConfig(output_dir=str(tmp_path / "o_grpo"), num_generations=8,
                                       max_completion_length=8, **{**common, "per_device_train_batch_size": 8},
                                       generation_kwargs={"suppress_tokens": [i for i in range(len(tokenizer))
                                                                              if i not in allowed]}))
    prompt = data["grpo"][0]["prompt"]
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert len(ids) == limits["grpo"]
    step(grpo)
    assert len(scored) == 8 and {tuple(truth) for _, truth in scored} == {tuple(data["grpo"][0]["ground_truth"])}
    assert {score for score, _ in scored} == {0.0, 1.0}
