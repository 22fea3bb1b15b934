"""Row lengths: what a run records (`meta` token counts, the manifest's `lengths`), and `lcsynth check` counting
rows over a trainer's limit, from those records or recounted with the trainer's own tokenizer."""

import asyncio
import json
import math
import subprocess
import sys

import pytest
from test_longpo import answers
from test_longpo import run as longpo_run
from test_pipeline import corpus, numbered_reply, recipe
from tiny_lm import train_tokenizer

from lcsynth.out.export import trainer_settings
from lcsynth.out.rows import row_tokens
from lcsynth.run.local import run_recipe


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


def check(run_dir, *args):
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", "check", str(run_dir), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def sft_run(tmp_path, scripted):
    texts = [f"The doc says item{i}. " * (10 + 5 * i) for i in range(5)]
    return asyncio.run(run_recipe(recipe(corpus(tmp_path, texts)), scripted(numbered_reply), show_progress=False))


def test_manifest_records_the_spread_of_recorded_row_lengths(sft_run):
    rows = read(sft_run.run_dir / "sft-00000.jsonl")
    lengths = [r["meta"]["prompt_tokens"] + r["meta"]["answer_tokens"] for r in rows]
    assert sft_run.manifest["lengths"] == {"sft": {
        "rows": len(rows), "min": min(lengths), "median": nearest_rank(lengths, 0.5),
        "p90": nearest_rank(lengths, 0.9), "max": max(lengths)}}
    assert json.loads((sft_run.run_dir / "manifest.json").read_text())["lengths"] == sft_run.manifest["lengths"]


def test_preference_pairs_record_prompt_and_answer_tokens(tmp_path, scripted):
    summary, _ = longpo_run(tmp_path, scripted, answers("The span says dumps writes JSON text.",
                                                        "The whole page lists many functions and classes here."))
    rows = read(summary.run_dir / "dpo-00000.jsonl")
    prompts = [r for r in summary.requests if "write nothing else" not in str(r.messages)]
    assert len(rows) == 2 and len(prompts) == 4  # per row: the answer from the span, then from the document
    for row in rows:
        meta = row["meta"]
        # the scripted backend reports 10 prompt tokens and one completion token per word
        assert (meta["prompt_tokens"], meta["chosen_tokens"], meta["rejected_tokens"]) == (10, 7, 9)
        assert row_tokens(meta) == 19
    assert summary.manifest["lengths"]["dpo"]["max"] == 19
    assert trainer_settings(summary.run_dir)["dpo"] == {"max_length": 19}


def test_check_recounts_with_the_trainers_tokenizer(sft_run, smol_tokenizer, smol_template, tmp_path):
    rows = read(sft_run.run_dir / "sft-00000.jsonl")
    # The scripted backend's usage counts are far below the real size of the rows; the bundled tokenizer's are exact.
    recorded = max(row_tokens(r["meta"]) for r in rows)
    real = [len(smol_tokenizer.encode_special(smol_template.render(r["messages"], add_generation_prompt=False)))
            for r in rows]
    assert recorded < min(real)
    limit = (recorded + min(real)) // 2
    trusting = check(sft_run.run_dir, "--max-length", limit)
    assert trusting.returncode == 0 and f"sft: 0 of {len(rows)} rows are over {limit} tokens" in trusting.stdout
    recounted = check(sft_run.run_dir, "--max-length", limit, "--tokenizer", "bundled")
    assert recounted.returncode == 1
    assert f"sft: {len(rows)} of {len(rows)} rows are over {limit} tokens (longest {max(real)})" in recounted.stdout
    assert check(sft_run.run_dir, "--max-length", max(real), "--tokenizer", "bundled").returncode == 0
    over = sum(n > sorted(real)[1] for n in real)
    assert f"sft: {over} of {len(rows)} rows" in check(sft_run.run_dir, "--max-length", sorted(real)[1],
                                                        "--tokenizer", "bundled").stdout

    # A transformers tokenizer folder counts what its own chat template makes of each conversation.
    tokenizer = train_tokenizer([m["content"] for r in rows for m in r["messages"]], tmp_path / "tok", 300)
    theirs = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True)["input_ids"]) for r in rows]
    folder = check(sft_run.run_dir, "--max-length", max(theirs) - 1, "--tokenizer", tmp_path / "tok")
    assert folder.returncode == 1
    assert f"sft: {theirs.count(max(theirs))} of {len(rows)} rows are over {max(theirs) - 1} tokens " \
           f"(longest {max(theirs)})" in folder.stdout


def test_check_mistakes_are_one_line(sft_run, tmp_path):
    missing = check(tmp_path / "nowhere", "--max-length", 10)
    assert missing.returncode == 2 and "no readable manifest.json" in missing.stderr
    bad = check(sft_run.run_dir, "--tokenizer", tmp_path / "nothing.gguf")
    assert bad.returncode == 2 and "--tokenizer:" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
