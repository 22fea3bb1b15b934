"""Row filters in a run (scripted backend, a fake): each drop is a reject naming the filter and why."""

import asyncio

import pytest
from conftest import text
from test_pipeline import corpus, read, recipe

from lcsynth.errors import ConfigError
from lcsynth.run.local import run_recipe
from lcsynth.run.runner import UnitRunner

ANSWERS = {
    "item0": "Lists keep items in order and allow duplicates; you can append, insert and slice them freely.",
    "item1": "Lists keep items in order and allow duplicates; you can append, insert and slice them freely!",
    "item2": "A dictionary maps hashable keys to values, and lookups take constant time on average.",
    "item3": "Lists keep items in order and allow duplicates; you can append, insert and slice them freely.",
    "item4": "yes " * 40,
    "item5": "Short.",
    "item6": "Tuples are immutable sequences, often used for fixed records and as dictionary keys.",
}


def reply(request):
    if request.prompt is not None:
        item = request.prompt.split("doc says ", 1)[1].split(".", 1)[0]
        return text(f"What about {item}?")
    item = request.message_dicts()[-1]["content"].split("about ", 1)[1].rstrip("?")
    return text(ANSWERS[item])


FILTERS = [{"name": "length", "min_tokens": 5, "part": "assistant"}, {"name": "repetition", "max_ratio": 0.3},
           {"name": "minhash", "threshold": 0.7}]
LOOSE = {"name": "longmagpie", "max_repetition": 1.0}  # let degenerate answers reach the filters


def test_filters_drop_planted_bad_rows_and_keep_distinct_ones(tmp_path, scripted):
    spec = recipe(corpus(tmp_path, [f"The doc says item{i}. " * 20 for i in range(7)]), filters=FILTERS,
                  methods=[{**LOOSE, "samples_per_document": 1}])
    summary = asyncio.run(run_recipe(spec, scripted(reply), show_progress=False))
    kept = [r["meta"]["doc_id"] for r in read(summary.run_dir / "sft-00000.jsonl")]
    assert kept == ["doc0", "doc2", "doc6"]
    rejects = {r["doc_id"]: (r["reason"], r["detail"]) for r in read(summary.run_dir / "rejects.jsonl")}
    assert rejects["doc1"][0] == rejects["doc3"][0] == "filtered_minhash"
    assert rejects["doc4"] == ("filtered_repetition", "repeated 3-gram ratio 0.9737 > 0.3")
    assert rejects["doc5"][0] == "filtered_length" and "< min_tokens 5" in rejects["doc5"][1]
    assert summary.manifest["counts"]["rejects"] == {"filtered_length": 1, "filtered_minhash": 2,
                                                     "filtered_repetition": 1}


def test_dedup_state_survives_a_resume(tmp_path, scripted, monkeypatch):
    monkeypatch.setattr(UnitRunner, "checkpoint_seconds", 0.0)
    path = corpus(tmp_path, [f"The doc says item{i}. " * 20 for i in range(7)])
    methods = [{**LOOSE, "samples_per_document": 1}]
    whole = asyncio.run(run_recipe(recipe(path, filters=FILTERS, methods=methods, output={"name": "whole"},
                                          cache={"enabled": False}), scripted(reply), show_progress=False))
    calls = {"n": 0}

    def crash_late(request):
        calls["n"] += 1
        if calls["n"] > 7:  # after doc0..doc2 have committed, before their duplicate doc3
            raise RuntimeError("killed")
        return reply(request)

    spec = recipe(path, filters=FILTERS, methods=methods, output={"name": "cut"}, limits={"max_in_flight": 1})
    with pytest.raises(RuntimeError):
        asyncio.run(run_recipe(spec, scripted(crash_late), show_progress=False))
    done = asyncio.run(run_recipe(spec, scripted(reply), show_progress=False))
    for name in ("sft-00000.jsonl", "rejects.jsonl"):
        assert (done.run_dir / name).read_bytes() == (whole.run_dir / name).read_bytes()


def test_language_filter_keeps_the_wanted_language(tmp_path, scripted):
    answers = {"item0": "The json module reads and writes data in the JSON text format used on the web.",
               "item1": "Le module json lit et écrit des données au format texte JSON utilisé sur le web.",
               "item2": "12345 67890 +-*/ 12345"}

    def reply_in_languages(request):
        if request.prompt is not None:
            return reply(request)
        return text(answers[request.message_dicts()[-1]["content"].split("about ", 1)[1].rstrip("?")])

    spec = recipe(corpus(tmp_path, [f"The doc says item{i}. " * 20 for i in range(3)]),
                  filters=[{"name": "language", "languages": ["en"]}], methods=[{**LOOSE, "samples_per_document": 1}])
    summary = asyncio.run(run_recipe(spec, scripted(reply_in_languages), show_progress=False))
    assert [r["meta"]["doc_id"] for r in read(summary.run_dir / "sft-00000.jsonl")] == ["doc0"]
    rejects = {r["doc_id"]: r["detail"] for r in read(summary.run_dir / "rejects.jsonl")}
    assert rejects["doc1"].startswith("detected fr (") and rejects["doc2"] == "no language detected (no letters)"


def test_unknown_filter_or_parameter_fails_before_any_work(tmp_path, scripted):
    path = corpus(tmp_path, ["The doc says a. " * 20])
    with pytest.raises(ConfigError, match="filters.0.name: unknown filter 'lenght'; known: context_gain, language, "):
        asyncio.run(run_recipe(recipe(path, filters=[{"name": "lenght"}]), scripted(reply)))
    with pytest.raises(ConfigError, match=r"filters.0 \(minhash\): treshold: unknown key"):
        asyncio.run(run_recipe(recipe(path, filters=[{"name": "minhash", "treshold": 0.5}]), scripted(reply)))
