"""Exports of finished runs: TRL, verl, JSONL and Parquet files that `datasets` loads without conversion."""

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from test_construct import construct
from test_pipeline import corpus, numbered_reply, recipe

import lcsynth
from lcsynth.errors import ConfigError
from lcsynth.out.export import export_run, parse_splits
from lcsynth.rewards import compute_score
from lcsynth.run.local import run_recipe


@pytest.fixture
def sft_run(tmp_path, scripted):
    texts = [f"The doc says item{i}. " * 20 for i in range(10)]
    return asyncio.run(run_recipe(recipe(corpus(tmp_path, texts)), scripted(numbered_reply), show_progress=False))


def test_trl_parquet_and_jsonl_exports_load_as_they_are(sft_run, tmp_path):
    rows = sft_run.rows["sft"]
    for fmt, builder in (("trl", "parquet"), ("parquet", "parquet"), ("jsonl", "json")):
        counts = export_run(sft_run.run_dir, fmt)
        path = sft_run.run_dir / "export" / fmt / "sft" / f"train.{'jsonl' if fmt == 'jsonl' else 'parquet'}"
        loaded = datasets.load_dataset(builder, data_files=str(path), split="train")
        assert counts == {"sft": {"train": rows}} and len(loaded) == rows
        assert loaded[0]["messages"][-1]["role"] == "assistant"
        if fmt == "trl":
            assert loaded.column_names == ["messages"]
        if fmt == "parquet":
            assert json.loads(loaded[0]["meta"])["method"] == "longmagpie"
    dataset = lcsynth.load(sft_run.run_dir)
    assert list(dataset) == ["sft"] and len(dataset["sft"]) == rows


def test_splits_are_stable_and_cover_every_row(sft_run, tmp_path):
    first = export_run(sft_run.run_dir, "jsonl", parse_splits("train=0.6,test=0.4"), tmp_path / "a")
    second = export_run(sft_run.run_dir, "jsonl", parse_splits("train=0.6,test=0.4"), tmp_path / "b")
    assert first == second and sum(first["sft"].values()) == sft_run.rows["sft"] and len(first["sft"]) == 2
    for split in first["sft"]:
        assert (tmp_path / "a" / "sft" / f"{split}.jsonl").read_bytes() == \
            (tmp_path / "b" / "sft" / f"{split}.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="sum to 1"):
        parse_splits("train=0.9,test=0.2")


def test_verl_layout_for_grpo_rows_scores_with_the_reward(tmp_path):
    method = {"name": "keychain", "qa": "demo", "max_items": 3, "lengths": {"targets": ["4k"]}}
    summary, rows = construct(tmp_path, method)
    export_run(summary.run_dir, "verl")
    loaded = datasets.load_dataset("parquet", data_files=str(summary.run_dir / "export/verl/grpo/train.parquet"),
                                   split="train")
    assert set(loaded.column_names) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    # verl loads a custom reward function from a file path and calls it by name, as here
    spec = importlib.util.spec_from_file_location("custom_reward", Path(lcsynth.__file__).parent / "rewards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for index, (row, original) in enumerate(zip(loaded, rows["grpo"], strict=True)):
        assert row["data_source"] == "lcsynth/keychain" and row["ability"] == "longcontext_qa"
        assert row["reward_model"] == {"style": "rule", "ground_truth": original["ground_truth"]}
        extra = row["extra_info"]
        assert extra["index"] == index and extra["split"] == "train" and row["prompt"] == original["prompt"]
        assert extra["question"] == original["meta"]["question"] and json.loads(extra["meta"]) == original["meta"]
        truth = row["reward_model"]["ground_truth"]
        for score in (compute_score, module.compute_score):
            assert score(row["data_source"], f"\\boxed{{{truth[0]}}}", truth, extra_info=extra) == 1.0
            assert score(row["data_source"], f"\\boxed{{{extra['question']}}}", truth, extra_info=extra) == 0.0
            assert score(row["data_source"], "\\boxed{e}", truth, extra, sandbox_fusion_url=None) == 0.0
    cli = subprocess.run([sys.executable, "-m", "lcsynth.cli", "export", str(summary.run_dir), "--to", "verl",
                          "--data-source", "custom_longcontextqa_lcsynth", "--out", str(tmp_path / "v")],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    relabelled = datasets.load_dataset("parquet", data_files=str(tmp_path / "v/grpo/train.parquet"), split="train")
    assert set(relabelled["data_source"]) == {"custom_longcontextqa_lcsynth"}
    export_run(summary.run_dir, "trl")
    trl = datasets.load_dataset("parquet", data_files=str(summary.run_dir / "export/trl/grpo/train.parquet"),
                                split="train")
    assert trl.column_names == ["prompt", "ground_truth", "question"]
    assert trl["question"] == [r["meta"]["question"] for r in rows["grpo"]]


def test_check_reports_rows_over_a_trainer_limit(sft_run):
    def check(limit):
        return subprocess.run([sys.executable, "-m", "lcsynth.cli", "check", str(sft_run.run_dir),
                               "--max-length", str(limit)], capture_output=True, text=True, timeout=60)

    cut, fine = check(5), check(100_000)
    total = sft_run.rows["sft"]
    assert cut.returncode == 1 and f"sft: {total} of {total} rows are over 5 tokens" in cut.stdout
    assert fine.returncode == 0 and f"sft: 0 of {total} rows are over 100000 tokens" in fine.stdout
    export = subprocess.run([sys.executable, "-m", "lcsynth.cli", "export", str(sft_run.run_dir), "--to", "trl"],
                            capture_output=True, text=True, timeout=60)
    assert export.returncode == 0 and "no row is cut with SFTConfig(max_length=" in export.stdout
    bad = subprocess.run([sys.executable, "-m", "lcsynth.cli", "export", str(sft_run.run_dir), "--to", "csv"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--to: 'csv' is not one of" in bad.stderr
