"""The run engine with a scripted backend (a fake): order, limits, rejects, manifest."""

import asyncio
import json

import pytest
from conftest import text

from lcsynth.config import validate_recipe
from lcsynth.errors import ConfigError
from lcsynth.run.local import run_recipe


def corpus(tmp_path, texts):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": f"doc{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def recipe(path, **sections):
    data = {"corpus": {"type": "jsonl", "path": str(path)},
            "methods": [{"name": "longmagpie", "samples_per_document": 2}],
            "output": {"root": "out", "name": "run"}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return validate_recipe(data, "test")


def numbered_reply(request):
    """Queries name their document; answers echo the query. Documents containing 'bad' ask nothing."""
    if request.prompt is not None:
        doc_line = request.prompt.split("doc says ", 1)[1].split(".", 1)[0]
        return text("Tell me." if "bad" in doc_line else f"What about {doc_line}?")
    return text("Answer to " + request.message_dicts()[-1]["content"])


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_come_out_in_unit_order_whatever_the_completion_order(tmp_path, scripted):
    texts = [f"The doc says item{i}. " * 20 for i in range(12)]
    backend = scripted(numbered_reply, jitter=0.01)
    summary = asyncio.run(run_recipe(recipe(corpus(tmp_path, texts)), backend, show_progress=False))
    rows = read(summary.run_dir / "sft-00000.jsonl")
    assert [(r["meta"]["doc_id"], r["meta"]["sample"]) for r in rows] == [
        (f"doc{i}", s) for i in range(12) for s in range(2)]
    assert rows[5]["messages"][1]["content"] == "Answer to What about item2?"
    assert backend.closed


def test_rejects_are_recorded_with_reason_raw_output_and_request_hash(tmp_path, scripted):
    texts = ["The doc says good. " * 20, "The doc says bad. " * 20, "tiny"]
    spec = recipe(corpus(tmp_path, texts), corpus={"min_chars": 20})
    summary = asyncio.run(run_recipe(spec, scripted(numbered_reply), show_progress=False))
    rejects = read(summary.run_dir / "rejects.jsonl")
    assert [(r["doc_id"], r["sample"], r["reason"]) for r in rejects] == [
        ("doc1", 0, "no_question"), ("doc1", 1, "no_question"), ("doc2", None, "document_too_short")]
    assert rejects[0]["raw"] == "Tell me." and rejects[0]["request_hash"].startswith("v1:")
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == {"sft": 2}
    assert manifest["counts"]["rejects"] == {"document_too_short": 1, "no_question": 2}
    assert manifest["counts"]["units"] == 4 and manifest["counts"]["documents_read"] == 3
    assert manifest["files"]["sft-00000.jsonl"]["rows"] == 2


def test_max_records_and_max_documents_stop_the_run(tmp_path, scripted):
    path = corpus(tmp_path, [f"The doc says item{i}. " * 20 for i in range(10)])
    summary = asyncio.run(run_recipe(recipe(path, limits={"max_records": 5}), scripted(numbered_reply, 0.01),
                                     show_progress=False))
    assert len(read(summary.run_dir / "sft-00000.jsonl")) == 5
    backend = scripted(numbered_reply)
    uncached = recipe(path, limits={"max_documents": 3}, cache={"enabled": False})
    summary = asyncio.run(run_recipe(uncached, backend, show_progress=False))
    assert len(read(summary.run_dir / "sft-00000.jsonl")) == 6 and len(backend.history) == 12


def test_long_documents_are_truncated_or_skipped_and_recorded(tmp_path, scripted, smol_tokenizer):
    long_text = "The doc says long. " + "filler words here. " * 400
    path = corpus(tmp_path, [long_text])
    summary = asyncio.run(run_recipe(recipe(path, context={"max_document_tokens": 200}), scripted(numbered_reply),
                                     show_progress=False))
    (row, _) = read(summary.run_dir / "sft-00000.jsonl")
    assert row["meta"]["document_tokens"] == 200 and row["meta"]["document_truncated"] is True
    summary = asyncio.run(run_recipe(recipe(path, context={"max_document_tokens": 200, "overflow": "skip"}),
                                     scripted(numbered_reply), show_progress=False))
    (reject,) = read(summary.run_dir / "rejects.jsonl")
    assert reject["reason"] == "document_too_long"
    assert reject["detail"] == f"{len(smol_tokenizer.encode(long_text))} tokens > limit 200"


def test_a_folder_that_is_not_a_run_is_never_cleared(tmp_path, scripted):
    spec = recipe(corpus(tmp_path, ["The doc says a. " * 20]))
    (tmp_path / "out" / "run").mkdir(parents=True)
    (tmp_path / "out" / "run" / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds no lcsynth run"):
        asyncio.run(run_recipe(spec, scripted(numbered_reply), show_progress=False))
    assert (tmp_path / "out" / "run" / "precious.txt").read_text() == "keep me"


def test_no_room_for_documents_is_a_config_error(tmp_path, scripted):
    spec = recipe(corpus(tmp_path, ["x" * 100]), methods=[{"name": "longmagpie", "answer_max_tokens": 9000}])
    with pytest.raises(ConfigError, match="leaves no room for documents"):
        asyncio.run(run_recipe(spec, scripted(numbered_reply), show_progress=False))


def test_unknown_method_and_bad_params_fail_before_any_work(tmp_path, scripted):
    path = corpus(tmp_path, ["x"])
    with pytest.raises(ConfigError, match="methods.0.name: unknown method 'nope'; known: keychain, longmagpie, "):
        asyncio.run(run_recipe(recipe(path, methods=[{"name": "nope"}]), scripted(numbered_reply)))
    with pytest.raises(ConfigError, match=r"methods.0 \(longmagpie\): samples_per_dokument: unknown key"):
        asyncio.run(run_recipe(recipe(path, methods=[{"name": "longmagpie", "samples_per_dokument": 2}]),
                               scripted(numbered_reply)))


def test_price_table_gives_a_cost_in_the_manifest(tmp_path, scripted):
    spec = recipe(corpus(tmp_path, ["The doc says a. " * 20]), backend={"price": {"prompt": 2.0, "completion": 10.0}})
    summary = asyncio.run(run_recipe(spec, scripted(numbered_reply), show_progress=False))
    tokens = summary.manifest["tokens"]
    assert tokens["prompt"] == 40 and tokens["requests"] == 4
    assert summary.manifest["cost"] == round((tokens["prompt"] * 2.0 + tokens["completion"] * 10.0) / 1e6, 6)


def test_every_row_carries_its_provenance(tmp_path, scripted):
    from lcsynth import __version__
    from lcsynth.run.resume import recipe_hash

    long_text = "The doc says long. " + "filler words here. " * 400
    spec = recipe(corpus(tmp_path, [long_text]), context={"max_document_tokens": 100})
    summary = asyncio.run(run_recipe(spec, scripted(numbered_reply), show_progress=False))
    row = read(summary.run_dir / "sft-00000.jsonl")[0]
    total = row["meta"]["source_spans"]["doc0"][1][1]
    assert row["meta"]["source_spans"] == {"doc0": [[0, 50], [total - 50, total]]}
    assert row["meta"]["lcsynth"] == __version__ and row["meta"]["recipe_hash"] == recipe_hash(spec)
    assert row["meta"]["templates"] == ["longmagpie/query@1", "longmagpie/answer@1", "longmagpie/sft_row@1"]
    assert recipe_hash(spec) != recipe_hash(recipe(corpus(tmp_path, [long_text]), seed=1))
    assert recipe_hash(spec) == recipe_hash(recipe(corpus(tmp_path, [long_text]), context={"max_document_tokens": 100},
                                                   limits={"max_in_flight": 2}))
