"""Exactly-once resume: an interrupted run finishes with the same rows as an uninterrupted one."""

import asyncio
import json

import pytest
from conftest import text
from test_pipeline import corpus, numbered_reply, read, recipe

from lcsynth.errors import ConfigError
from lcsynth.run.local import run_recipe
from lcsynth.run.runner import UnitRunner

TEXTS = [f"The doc says item{i}. " * 20 for i in range(8)] + ["The doc says bad. " * 20]


class Crash(Exception):
    pass


def crashing_after(limit):
    calls = {"n": 0}

    def reply(request):
        calls["n"] += 1
        if calls["n"] > limit:
            raise Crash("killed")
        return numbered_reply(request)

    return reply


@pytest.mark.parametrize("crash_at", [1, 9, 20, 30])
def test_a_run_interrupted_anywhere_resumes_to_the_same_output(tmp_path, scripted, monkeypatch, crash_at):
    monkeypatch.setattr(UnitRunner, "checkpoint_seconds", 0.0)
    path = corpus(tmp_path, TEXTS)
    uncut = scripted(numbered_reply)
    whole = asyncio.run(run_recipe(recipe(path, output={"name": "whole", "shard_rows": 3}, cache={"enabled": False}),
                                   uncut, show_progress=False))
    # 9 documents x 2 samples: 18 queries, 16 answers, and two more tries of each query the 'bad' document fails
    assert len(uncut.history) == 18 + 16 + 2 * 2
    spec = recipe(path, output={"name": "cut", "shard_rows": 3}, cache={"path": str(tmp_path / "cut.sqlite")},
                  limits={"max_in_flight": 3})
    with pytest.raises(Crash):
        asyncio.run(run_recipe(spec, scripted(crashing_after(crash_at), jitter=0.002), show_progress=False))
    assert not (spec.run_dir() / "manifest.json").exists()
    if crash_at >= 20:  # by then units have committed, and a checkpoint records them
        assert json.loads((spec.run_dir() / "checkpoint.json").read_text())["next_unit"] > 0
    again = scripted(numbered_reply)
    done = asyncio.run(run_recipe(spec, again, show_progress=False))
    names = sorted(p.name for p in whole.run_dir.glob("*.jsonl"))
    assert names == sorted(p.name for p in done.run_dir.glob("*.jsonl")) and len(names) == 7  # 6 shards + rejects
    for name in names:
        assert (done.run_dir / name).read_bytes() == (whole.run_dir / name).read_bytes(), name
    cut, full = json.loads((done.run_dir / "manifest.json").read_text()), whole.manifest
    assert cut["counts"] == full["counts"] and cut["tokens"] == full["tokens"]
    assert not (done.run_dir / "checkpoint.json").exists()
    assert len(again.history) == len(uncut.history) - crash_at  # every answered request came from the cache


def test_a_changed_recipe_does_not_resume_silently(tmp_path, scripted, monkeypatch):
    monkeypatch.setattr(UnitRunner, "checkpoint_seconds", 0.0)
    path = corpus(tmp_path, TEXTS)
    with pytest.raises(Crash):
        asyncio.run(run_recipe(recipe(path, limits={"max_in_flight": 3}), scripted(crashing_after(20)),
                               show_progress=False))
    changed = recipe(path, seed=7, limits={"max_in_flight": 3})
    with pytest.raises(ConfigError, match="holds an unfinished run of a different recipe; rerun with --fresh"):
        asyncio.run(run_recipe(changed, scripted(numbered_reply), show_progress=False))
    fresh = recipe(path, seed=7, output={"resume": False}, limits={"max_in_flight": 3})
    summary = asyncio.run(run_recipe(fresh, scripted(numbered_reply), show_progress=False))
    assert len(read(summary.run_dir / "sft-00000.jsonl")) == 16


def test_retry_rejects_reruns_only_rejected_units_with_new_seeds(tmp_path, scripted):
    path = corpus(tmp_path, [f"The doc says item{i}. " * 20 for i in range(3)])
    flaky = {"first": True}

    def reply(request):  # the first round answers doc1's units badly, later rounds well
        if request.prompt is not None and "item1" in request.prompt and flaky["first"]:
            return text("Tell me.")
        return numbered_reply(request)

    spec = recipe(path)
    first = asyncio.run(run_recipe(spec, scripted(reply), show_progress=False))
    assert first.rows == {"sft": 4} and first.rejects == {"no_question": 2}
    flaky["first"] = False
    backend = scripted(reply)
    retried = asyncio.run(run_recipe(spec, backend, show_progress=False, retry_reasons=["no_question"]))
    assert retried.rows == {"sft": 6} and retried.rejects == {}
    assert len(backend.history) == 4  # doc1's two units, query and answer each; the rest came from the cache
    rows = read(retried.run_dir / "sft-00000.jsonl")
    assert [r["meta"].get("attempt") for r in rows] == [None, None, 1, 1, None, None]
    assert [r["meta"]["doc_id"] for r in rows] == ["doc0", "doc0", "doc1", "doc1", "doc2", "doc2"]
    again = scripted(reply)  # a plain rerun keeps the retried outcome (same seeds, from the cache)
    rerun = asyncio.run(run_recipe(spec, again, show_progress=False))
    assert again.history == [] and read(rerun.run_dir / "sft-00000.jsonl") == rows
    with pytest.raises(ConfigError, match="holds no finished run to retry"):
        asyncio.run(run_recipe(recipe(path, output={"name": "never"}), scripted(reply), retry_reasons=[]))
