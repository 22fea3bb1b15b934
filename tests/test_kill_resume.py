"""kill -9 a real `lcsynth generate` at random moments; the resumed run must equal an uninterrupted one.

The endpoint is a scripted OpenAI-compatible server on 127.0.0.1 (a fake, bounded) that counts every
request, so the test also sees that answered requests are not sent again.
"""

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

from fake_openai import FakeOpenAI

from lcsynth.backends.llamacpp import bundled_gguf

CONCURRENCY = 4


def reply(body):
    if "prompt" in body:  # a self-query: name the document it came from
        return "What does " + body["prompt"].split("says ", 1)[1].split(".", 1)[0] + " mean?"
    return "It means " + body["messages"][-1]["content"][:40]


def write_recipe(tmp_path, url):
    docs = [{"id": f"d{i}", "text": f"This document says topic{i}. " * 25} for i in range(30)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "r.yaml").write_text(
        "corpus: {type: jsonl, path: c.jsonl}\n"
        "methods: [{name: longmagpie, samples_per_document: 2}]\n"
        f"backend: {{type: openai, base_url: '{url}', model: fake, tokenizer: '{bundled_gguf()}', "
        f"max_concurrency: {CONCURRENCY}}}\n")


def generate(tmp_path, name):
    return subprocess.Popen([sys.executable, "-m", "lcsynth.cli", "generate", "r.yaml", "-q",
                             "--set", f"output.name={name}", "--set", f"cache.path={name}.sqlite",
                             "--set", "output.shard_rows=7"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def assert_checkpoint_is_whole(run_dir) -> int:
    """What a checkpoint vouches for is whole JSONL lines (the tail after it is cut when the run resumes)."""
    checkpoint = run_dir / "checkpoint.json"
    if not checkpoint.exists():
        return 0
    state = json.loads(checkpoint.read_text())
    for name, length in state["writer"]["files"].items():
        partial = run_dir / f"{name}.partial"  # or already renamed: a shard that filled up after the checkpoint
        data = (partial if partial.exists() else run_dir / name).read_bytes()[:length]
        assert data == b"" or data.endswith(b"\n")
        for line in data.splitlines():
            json.loads(line)
    return state["next_unit"]


def assert_cache_is_whole(path) -> None:
    """sqlite's own check of every page and index of the request cache."""
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_kill_9_at_random_moments_then_resume_loses_and_repeats_nothing(tmp_path):
    rng = random.Random(1234)
    whole_server = FakeOpenAI(default=("ok", None), responder=reply, delay=0.02).start_in_thread()
    try:
        write_recipe(tmp_path, whole_server.url)
        whole = generate(tmp_path, "whole")
        assert whole.wait(120) == 0, whole.stderr.read()
    finally:
        whole_server.stop()

    server = FakeOpenAI(default=("ok", None), responder=reply, delay=0.2).start_in_thread()
    bodies = server.bodies
    try:
        write_recipe(tmp_path, server.url)
        kills, resumed_from = 0, []
        for _ in range(4):
            run = generate(tmp_path, "cut")
            time.sleep(rng.uniform(2.0, 4.0))
            if run.poll() is not None:
                break
            run.send_signal(signal.SIGKILL)
            run.wait(30)
            kills += 1
            resumed_from.append(assert_checkpoint_is_whole(tmp_path / "outputs" / "cut"))
            assert_cache_is_whole(tmp_path / "cut.sqlite")
            lock = tmp_path / "outputs" / ".cut.lock"  # left by the dead process; the kernel released its flock
            assert lock.read_text().strip() == str(run.pid)
        final = generate(tmp_path, "cut")
        assert final.wait(120) == 0, final.stderr.read()
    finally:
        server.stop()

    cut, whole_dir = tmp_path / "outputs" / "cut", tmp_path / "outputs" / "whole"
    names = sorted(p.name for p in whole_dir.glob("*.jsonl"))
    assert names == sorted(p.name for p in cut.glob("*.jsonl")) and len(names) == 10  # 9 shards of <= 7 rows
    for name in names:
        assert (cut / name).read_bytes() == (whole_dir / name).read_bytes(), name
    rows = [json.loads(line) for shard in sorted(cut.glob("sft-*.jsonl")) for line in shard.read_text().splitlines()]
    assert len(rows) == 60 and len({(r["meta"]["doc_id"], r["meta"]["sample"]) for r in rows}) == 60
    assert not list(cut.glob("*.partial")) and not (cut / "checkpoint.json").exists()
    assert_cache_is_whole(tmp_path / "cut.sqlite")
    sent = Counter(json.dumps(b, sort_keys=True) for b in bodies)
    repeats = sum(sent.values()) - len(sent)
    print(f"\nkill -9 during generate: {kills} kills, resumed from units {resumed_from}, {repeats} requests repeated")
    assert kills >= 1 and max(resumed_from) > 0, resumed_from  # at least one resume started mid-run
    assert repeats <= kills * CONCURRENCY  # only requests in flight at a kill are asked again
