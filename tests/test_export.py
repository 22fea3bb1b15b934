"""Exports of finished runs: TRL, verl, JSONL and Parquet files that `datasets` loads without conversion."""

import asyncio
import json
import subprocess
import sys

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
    for index, (row, original) in enumerate(zip(loaded, rows["grpo"], strict=True)):
        assert row["data_source"] == "lcsynth/keychain" and row["ability"] == "longcontext_qa"
        assert row["reward_model"] == {"style": "rule", "ground_truth": original["ground_truth"]}
        assert row["extra_info"]["index"] == index and row["prompt"] == original["prompt"]
        truth = row["reward_model"]["ground_truth"]
        assert compute_score(row["data_source"], f"\\boxed{{{truth[0]}}}", truth) == 1.0


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
