"""The sqlite request cache and batch rounds (write requests, ingest results, continue), with a scripted backend."""

import asyncio
import json
import sqlite3

import pytest
from conftest import text
from test_pipeline import corpus, numbered_reply, read, recipe

from lcsynth.backends.base import Request
from lcsynth.backends.batch import ingest_results
from lcsynth.backends.cache import RequestCache
from lcsynth.errors import InputError
from lcsynth.run.local import run_recipe


def test_cache_round_trip_and_migrations(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    request = Request(prompt="p", seed=1)
    assert cache.get(request.digest("m")) is None
    cache.put(request.digest("m"), "m", text("answer"))
    assert cache.get(request.digest("m")).text == "answer" and len(cache) == 1
    assert cache.get(request.digest("other-model")) is None
    cache.close()
    reopened = RequestCache(tmp_path / "c.sqlite")  # migrations run once
    assert len(reopened) == 1
    reopened.close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert [r[0] for r in db.execute("SELECT name FROM _migrations")] == ["m001_responses"]


def test_not_a_cache_file_is_a_clear_error(tmp_path):
    (tmp_path / "c.sqlite").write_text("garbage " * 100)
    with pytest.raises(InputError, match="not a usable cache file"):
        RequestCache(tmp_path / "c.sqlite")


def test_a_rerun_is_answered_from_the_cache_with_identical_output(tmp_path, scripted):
    spec = recipe(corpus(tmp_path, [f"The doc says item{i}. " * 20 for i in range(3)]))
    first = scripted(numbered_reply)
    summary = asyncio.run(run_recipe(spec, first, show_progress=False))
    rows = (summary.run_dir / "sft-00000.jsonl").read_bytes()
    manifest = (summary.run_dir / "manifest.json").read_bytes()
    second = scripted(numbered_reply)
    summary = asyncio.run(run_recipe(spec, second, show_progress=False))
    assert len(first.history) == 12 and second.history == []
    assert (summary.run_dir / "sft-00000.jsonl").read_bytes() == rows
    assert (summary.run_dir / "manifest.json").read_bytes() == manifest
    assert json.loads((summary.run_dir / "timings.json").read_text())["cache_hits"] == 12


def provider(batch_file, results_file, reply):
    """Plays the batch provider: answers every request line of a batch file."""
    with results_file.open("w") as out:
        for line in batch_file.read_text().splitlines():
            job = json.loads(line)
            body = job["body"]
            request = Request(prompt=body["prompt"]) if "prompt" in body else Request.chat(body["messages"])
            completion = reply(request)
            choice = ({"text": completion.text} if "prompt" in body
                      else {"message": {"role": "assistant", "content": completion.text}})
            out.write(json.dumps({"custom_id": job["custom_id"], "response": {"status_code": 200, "body": {
                "choices": [{**choice, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1,
                                                                            "completion_tokens": 1}}}}) + "\n")


def test_batch_rounds_finish_the_run_like_a_direct_one(tmp_path, scripted):
    texts = [f"The doc says item{i}. " * 20 for i in range(3)] + ["The doc says bad. " * 20]
    direct = recipe(corpus(tmp_path, texts), output={"name": "direct"}, cache={"path": str(tmp_path / "d.sqlite")})
    expected = read(asyncio.run(run_recipe(direct, scripted(numbered_reply), show_progress=False)).run_dir
                    / "sft-00000.jsonl")

    spec = recipe(corpus(tmp_path, texts), output={"name": "batched"})
    batch, results = tmp_path / "batch.jsonl", tmp_path / "results.jsonl"
    rounds = []
    for _ in range(4):
        backend = scripted(numbered_reply)
        summary = asyncio.run(run_recipe(spec, backend, show_progress=False, batch_out=batch))
        assert backend.history == []  # nothing is sent during a batch round
        rounds.append((summary.pending, summary.batch_requests))
        if summary.batch_requests:
            first = json.loads(batch.read_text().splitlines()[0])
            assert first["method"] == "POST" and first["custom_id"].startswith("v1:")
            provider(batch, results, numbered_reply)
            cache = RequestCache(spec.cache_path())
            assert ingest_results(results, cache, "scripted") == (summary.batch_requests, 0)
            cache.close()
    # round 1: every query; round 2: the answers of units whose query passed, and a second try of the two
    # queries the 'bad' document failed; round 3: their third and last try; round 4: nothing left
    assert rounds == [(8, 8), (8, 8), (2, 2), (0, 0)]
    assert [r["messages"] for r in read(summary.run_dir / "sft-00000.jsonl")] == [r["messages"] for r in expected]
    assert [r["reason"] for r in read(summary.run_dir / "rejects.jsonl")] == ["no_question", "no_question"]


def test_failed_batch_results_are_not_cached_and_bad_lines_are_errors(tmp_path):
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps({"custom_id": "v1:x", "error": {"message": "boom"}}) + "\n")
    cache = RequestCache(tmp_path / "c.sqlite")
    assert ingest_results(results, cache, "m") == (0, 1) and len(cache) == 0
    results.write_text('{"no": "id"}\n')
    with pytest.raises(InputError, match=r"r.jsonl:1: not an OpenAI batch result line"):
        ingest_results(results, cache, "m")
    cache.close()


def test_batch_round_from_the_command_line(tmp_path):
    import subprocess
    import sys

    from lcsynth.backends.llamacpp import bundled_gguf

    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "a", "text": "The json module. " * 30}) + "\n")
    (tmp_path / "r.yaml").write_text(
        "corpus: {type: jsonl, path: c.jsonl}\nmethods: [{name: longmagpie, samples_per_document: 2}]\n"
        f"backend: {{type: openai, base_url: 'http://127.0.0.1:9/v1', model: served, tokenizer: '{bundled_gguf()}'}}\n")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "lcsynth.cli", *args], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    made = cli("generate", "r.yaml", "-q", "--batch-out", "batch.jsonl")
    assert made.returncode == 0, made.stderr
    assert "2 units wait on 2 requests written to batch.jsonl" in made.stderr
    lines = [json.loads(line) for line in (tmp_path / "batch.jsonl").read_text().splitlines()]
    assert {(line["url"], line["body"]["model"]) for line in lines} == {("/v1/completions", "served")}
    provider(tmp_path / "batch.jsonl", tmp_path / "results.jsonl", lambda r: text("What is it?"))
    ingested = cli("ingest", "outputs/r", "--batch-results", "results.jsonl")
    assert ingested.returncode == 0 and "stored 2 results" in ingested.stderr
    again = cli("generate", "r.yaml", "-q", "--batch-out", "batch.jsonl")
    assert "2 units wait on 2 requests" in again.stderr
    assert all("messages" in json.loads(line)["body"] for line in (tmp_path / "batch.jsonl").read_text().splitlines())


@pytest.mark.parametrize("change", [
    {"prompt": "q?"}, {"max_tokens": 9}, {"temperature": 0.1}, {"top_p": 0.5}, {"seed": 2}, {"stop": ("x",)},
    {"json_schema": {"type": "object"}},
])
def test_any_changed_field_misses_the_cache(tmp_path, change):
    cache = RequestCache(tmp_path / "c.sqlite")
    base = {"prompt": "q", "max_tokens": 8, "temperature": 0.8, "top_p": 0.95, "seed": 1, "stop": ()}
    cache.put(Request(**base).digest("m"), "m", text("cached"))
    assert cache.get(Request(**base).digest("m")).text == "cached"
    assert cache.get(Request(**{**base, **change}).digest("m")) is None
    cache.close()


def test_cache_command_line_stats_export_clear(tmp_path):
    import os
    import subprocess
    import sys

    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put("v1:a", "model-a", text("one two"))
    cache.put("v1:b", "model-b", text("three"))
    cache.close()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "lcsynth.cli", "cache", *args, "--path", "c.sqlite"],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={**os.environ, "COLUMNS": "200"})

    stats = cli("stats").stdout
    assert "model-a" in stats and "model-b" in stats
    assert cli("export", "--out", "e.jsonl").returncode == 0
    exported = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(e["request_hash"], e["text"]) for e in exported] == [("v1:a", "one two"), ("v1:b", "three")]
    assert "deleted 1 responses" in cli("clear", "--model", "model-a", "--yes").stderr
    assert len(RequestCache(tmp_path / "c.sqlite")) == 1
    missing = subprocess.run([sys.executable, "-m", "lcsynth.cli", "cache", "stats", "--path", "nope.sqlite"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: nope.sqlite: no cache file here")


def _rows_on_disk(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    finally:
        db.close()


def test_puts_in_one_loop_iteration_are_written_together_at_its_end(tmp_path):
    from lcsynth.backends.base import Completion, Usage

    cache = RequestCache(tmp_path / "c.sqlite")
    answer = Completion("x", "stop", Usage(1, 1))

    async def burst():
        for i in range(5):
            cache.put(f"k{i}", "m", answer)
        assert _rows_on_disk(tmp_path / "c.sqlite") == 0  # not yet: still the same loop iteration
        assert cache.get("k3") == answer  # but readable at once
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return _rows_on_disk(tmp_path / "c.sqlite")

    assert asyncio.run(burst()) == 5
    cache.close()


def test_puts_outside_a_loop_are_written_by_size_age_and_close(tmp_path):
    from lcsynth.backends.base import Completion, Usage

    cache = RequestCache(tmp_path / "c.sqlite")
    cache.batch_size, cache.flush_seconds = 3, 3600
    for i in range(7):
        cache.put(f"k{i}", "m", Completion(str(i), "stop", Usage()))
    assert _rows_on_disk(tmp_path / "c.sqlite") == 6  # two full batches
    assert len(cache) == 7 and cache.get("k6").text == "6"
    cache.put("k7", "m", Completion("7", "stop", Usage()))
    cache.close()
    assert _rows_on_disk(tmp_path / "c.sqlite") == 8
    assert sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_worker_caches_read_a_snapshot_of_the_main_cache_and_merge_into_it(tmp_path):
    from lcsynth.backends.cache import merge_worker_caches, worker_cache_dir

    main = RequestCache(tmp_path / "cache.sqlite")
    main.put("k-main", "m", text("from main"))
    main.checkpoint()
    workers = worker_cache_dir(main.path)
    snapshot = RequestCache(main.path, "snapshot")
    one = RequestCache(workers / "worker-a.sqlite", "exclusive", fallback=snapshot)
    assert one.get("k-main").text == "from main" and one.get("k-none") is None and one.hits == 1
    one.put("k-one", "m", text("from one"))
    other = RequestCache(workers / "worker-b.sqlite", "exclusive")
    other.put("k-other", "m", text("from other"))
    other.put("k-main", "m", text("asked again"))
    assert merge_worker_caches(main, wait_seconds=0.2) == 0  # both still open: their workers still run
    assert sorted(p.name for p in workers.glob("*.sqlite")) == ["worker-a.sqlite", "worker-b.sqlite"]
    one.close()
    assert merge_worker_caches(main, wait_seconds=0.2) == 1 and not (workers / "worker-a.sqlite").exists()
    other.close()
    assert merge_worker_caches(main, wait_seconds=0.2) == 1 and not workers.exists()
    assert [main.get(k).text for k in ("k-main", "k-one", "k-other")] == ["from main", "from one", "from other"]
    main.close()
    with pytest.raises(InputError, match="not a usable cache file"):
        RequestCache(tmp_path / "missing.sqlite", "snapshot")


def test_a_cache_opened_empty_answers_from_memory_what_it_holds(tmp_path):
    from lcsynth.backends.base import Completion, Usage

    path = tmp_path / "c.sqlite"
    first = RequestCache(path)
    first.put("k1", "m", Completion("one", "stop", Usage(1, 1)))
    first.flush()
    assert first.get("k1").text == "one" and first.get("k0") is None  # k1 written; k0 known absent, no query
    second = RequestCache(path)  # opened non-empty: looks every key up in the file
    second.put("k2", "m", Completion("two", "stop", Usage(1, 1)))
    second.flush()
    assert second.get("k1").text == "one"
    assert first.get("k2") is None  # written by another process after `first` opened: costs a request, no more
    assert RequestCache(path).get("k2").text == "two"

    worker = RequestCache(tmp_path / "w.sqlite")
    worker.put("k3", "m", Completion("three", "stop", Usage(1, 1)))
    worker.close()
    fresh = RequestCache(tmp_path / "fresh.sqlite")
    assert fresh.merge(tmp_path / "w.sqlite") == 1 and fresh.get("k3").text == "three"
    for cache in (first, second, fresh):
        cache.close()
