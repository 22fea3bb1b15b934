"""The Ray executor on a real local Ray instance (2 CPUs, shared by the module): the same files as the local executor.

LLM-style units talk to a scripted OpenAI-compatible server on 127.0.0.1 (a fake, bounded); the test marked
`model` runs the real embedded llama.cpp model in one replica.
"""

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from fake_openai import FakeOpenAI
from test_embedded_model import SMALL_DEMO

from lcsynth.backends.cache import RequestCache, worker_cache_dir
from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.config import load_recipe, validate_recipe
from lcsynth.corpus.demo import write_demo_corpus
from lcsynth.errors import ConfigError
from lcsynth.out.export import export_run
from lcsynth.run.local import run_recipe

ray = pytest.importorskip("ray")
from lcsynth.run.ray_executor import RayOptions, run_recipe_on_ray  # noqa: E402

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module; yields its address for other processes."""
    context = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20,
                       logging_level="WARNING")
    yield context.address_info["gcs_address"]
    ray.shutdown()


def same_files(one, other):
    names = sorted(p.name for p in one.glob("*.jsonl"))
    assert names == sorted(p.name for p in other.glob("*.jsonl")) and "rejects.jsonl" in names
    for name in names:
        assert (one / name).read_bytes() == (other / name).read_bytes(), name
    return names


def same_manifest(one, other):
    first, second = (json.loads((run / "manifest.json").read_text()) for run in (one, other))
    for key in ("counts", "tokens", "lengths", "files", "model", "seed"):
        assert first[key] == second[key], key


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """An output root shared by the module (the token store is built once) holding the demo corpus as JSONL.

    pydoc renders a few pages with the state of the process that reads them (os.environ, logging's and
    mimetypes' globals), and the plan is read in a Ray worker, so the runs compared here read one file.
    """
    root = tmp_path_factory.mktemp("demo")
    write_demo_corpus(root)
    return root


def construct(root, name, method):
    return validate_recipe({"corpus": {"type": "jsonl", "path": str(root / "demo.jsonl"), "min_chars": 2000},
                            "backend": {"type": "none"}, "methods": [method],
                            "output": {"root": str(root), "name": name}, "limits": {"max_documents": 5}}, "test")


@pytest.mark.parametrize("method", [
    {"name": "untie_knots", "lengths": {"targets": ["4k"]}, "samples_per_document": 2, "tracing_rows": 1},
    {"name": "nextlong", "lengths": {"targets": ["16k", "32k"]}},  # its index is built once, before the replicas
])
def test_constructive_rows_on_two_replicas_are_the_local_executors_files(cluster, demo_root, method):
    on_ray = run_recipe_on_ray(construct(demo_root, f"{method['name']}-ray", method), RayOptions(num_replicas=2),
                               show_progress=False)  # first: the store and any index are built in this run
    local = asyncio.run(run_recipe(construct(demo_root, f"{method['name']}-local", method), show_progress=False))
    assert sum(on_ray.rows.values()) >= 3
    same_files(local.run_dir, on_ray.run_dir)
    same_manifest(local.run_dir, on_ray.run_dir)
    timings = json.loads((on_ray.run_dir / "timings.json").read_text())
    assert timings["executor"]["num_replicas"] == 2
    assert not (on_ray.run_dir / "checkpoint.json").exists() and not list(on_ray.run_dir.glob("*.partial"))
    split = {"train": 0.5, "test": 0.5}  # `lcsynth export` reads the folder as it reads a local run's
    assert export_run(on_ray.run_dir, "trl", split) == export_run(local.run_dir, "trl", split)
    for path in (local.run_dir / "export" / "trl").rglob("*.parquet"):
        assert path.read_bytes() == (on_ray.run_dir / path.relative_to(local.run_dir)).read_bytes()


def reply(body):
    if "prompt" in body:  # a self-query: name the document it came from
        return "What does " + body["prompt"].split("says ", 1)[1].split(".", 1)[0] + " mean?"
    return "It means " + body["messages"][-1]["content"][:40]


def write_corpus(tmp_path, documents):
    docs = [{"id": f"d{i}", "text": f"This document says topic{i}. " * 25} for i in range(documents)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))


def served(tmp_path, url, name, concurrency=4, **sections):
    data = {"corpus": {"type": "jsonl", "path": "c.jsonl"},
            "methods": [{"name": "longmagpie", "samples_per_document": 2}],
            "backend": {"type": "openai", "base_url": url, "model": "fake", "tokenizer": str(bundled_gguf()),
                        "max_concurrency": concurrency},
            "output": {"name": name, "shard_rows": 5}, "cache": {"path": "cache.sqlite"}, **sections}
    return validate_recipe(data, "test")


def test_llm_units_on_two_replicas_match_and_replay_from_the_merged_worker_caches(cluster, tmp_path):
    write_corpus(tmp_path, 8)
    server = FakeOpenAI(default=("ok", None), responder=reply).start_in_thread()
    try:
        local = asyncio.run(run_recipe(served(tmp_path, server.url, "local", cache={"enabled": False}),
                                       show_progress=False))
        asked = server.arrivals
        first = run_recipe_on_ray(served(tmp_path, server.url, "ray"), RayOptions(num_replicas=2),
                                  show_progress=False)
        assert server.arrivals - asked == asked == 32  # 16 units, a query and an answer each
        again = run_recipe_on_ray(served(tmp_path, server.url, "again"), RayOptions(num_replicas=2),
                                  show_progress=False)
        assert server.arrivals - asked == 32  # nothing asked twice: the second run read the merged cache
    finally:
        server.stop()
    assert len(same_files(local.run_dir, first.run_dir)) == 5  # 4 shards of <= 5 rows, rejects
    same_files(first.run_dir, again.run_dir)
    same_manifest(local.run_dir, first.run_dir)
    timings = [json.loads((run.run_dir / "timings.json").read_text()) for run in (first, again)]
    assert timings[0]["cache_entries_merged"] == 32 and timings[0]["cache_hits"] == 0
    assert timings[1]["cache_entries_merged"] == 0 and timings[1]["cache_hits"] == 32
    assert not worker_cache_dir(tmp_path / "cache.sqlite").exists()
    cache = RequestCache(tmp_path / "cache.sqlite")
    assert len(cache) == 32
    cache.close()


def wait_until_unlocked(folder, seconds=60):
    """Worker caches stay locked while their replica lives; a killed driver's replicas die shortly after it."""
    deadline = time.time() + seconds
    for path in folder.glob("worker-*.sqlite"):
        while True:
            db = sqlite3.connect(path, timeout=0)
            try:
                db.execute("BEGIN EXCLUSIVE")
                db.execute("ROLLBACK")
                break
            except sqlite3.OperationalError:
                assert time.time() < deadline, f"{path} still locked"
                time.sleep(0.2)
            finally:
                db.close()


def test_a_killed_ray_run_resumes_without_duplicates_or_repeated_requests(cluster, tmp_path):
    write_corpus(tmp_path, 20)
    server = FakeOpenAI(default=("ok", None), responder=reply).start_in_thread()
    try:
        whole = asyncio.run(run_recipe(served(tmp_path, server.url, "whole", 2, cache={"enabled": False}),
                                       show_progress=False))
        sent_whole = server.arrivals
        server.delay = 0.3  # slow enough to kill the run between two checkpoints
        recipe = tmp_path / "r.yaml"
        recipe.write_text(json.dumps(served(tmp_path, server.url, "cut", 2).model_dump(mode="json")))
        run = subprocess.Popen([sys.executable, "-m", "lcsynth.cli", "generate", str(recipe), "-q", "--executor",
                                "ray", "--address", cluster, "--num-replicas", "2"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        checkpoint, deadline = tmp_path / "outputs" / "cut" / "checkpoint.json", time.time() + 120
        while not (checkpoint.exists() and json.loads(checkpoint.read_text())["next_unit"] >= 6):
            assert run.poll() is None and time.time() < deadline, run.stderr.read() if run.poll() else "slow"
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait(30)
        committed = json.loads(checkpoint.read_text())["next_unit"]
        assert 6 <= committed < 40 and not (tmp_path / "outputs" / "cut" / "manifest.json").exists()
        workers = worker_cache_dir(tmp_path / "cache.sqlite")
        kept = 0
        for path in workers.glob("worker-*.sqlite"):  # what the killed replicas were answered, they kept
            db = sqlite3.connect(path)
            kept += db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            db.close()
        assert kept >= 2 * committed
        wait_until_unlocked(workers)
        done = run_recipe_on_ray(load_recipe(recipe), RayOptions(num_replicas=2), show_progress=False)
    finally:
        server.stop()
    same_files(whole.run_dir, done.run_dir)
    same_manifest(whole.run_dir, done.run_dir)
    rows = [json.loads(line) for shard in sorted(done.run_dir.glob("sft-*.jsonl")) for line in shard.open()]
    assert len(rows) == 40 and len({(r["meta"]["doc_id"], r["meta"]["sample"]) for r in rows}) == 40
    sent = Counter(json.dumps(body, sort_keys=True) for body in server.bodies[sent_whole:])
    repeats = sum(sent.values()) - len(sent)
    assert len(sent) == 80 and repeats <= 2 * 2  # only requests in flight at the kill (2 replicas x 2) again
    assert not workers.exists()


def test_a_replica_that_cannot_run_the_recipe_stops_the_run_with_one_line(cluster, demo_root):
    spec = construct(demo_root, "gain", {"name": "untie_knots", "lengths": {"targets": ["4k"]}})
    spec.filters.append({"name": "context_gain", "min_gain": 0.1})
    with pytest.raises(ConfigError, match="context_gain"):
        run_recipe_on_ray(spec, RayOptions(num_replicas=1), show_progress=False)


@pytest.mark.model
def test_the_embedded_model_on_a_replica_writes_the_local_executors_files(cluster, demo_root, request):
    demo = request.config.rootpath / "recipes" / "demo.yaml"
    overrides = [value for value in SMALL_DEMO if value != "--set"]
    overrides = [*overrides, "limits.max_documents=1", "methods.0.samples_per_document=2", "corpus.type=jsonl",
                 f"corpus.path={demo_root / 'demo.jsonl'}"]
    local = asyncio.run(run_recipe(load_recipe(demo, [*overrides, "output.name=local"]), show_progress=False))
    on_ray = run_recipe_on_ray(load_recipe(demo, [*overrides, "output.name=ray"]), RayOptions(num_replicas=1),
                               show_progress=False)
    assert sum(local.rows.values()) + sum(local.rejects.values()) == 2
    same_files(local.run_dir, on_ray.run_dir)
    same_manifest(local.run_dir, on_ray.run_dir)
