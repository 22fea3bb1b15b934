"""Crash safety of the commands that write: `kill -9` during `lcsynth export` and `lcsynth push` (the Hub is the
loopback fake of tests/fake_hub.py), two runs on one folder, and a run that fails while replacing a finished one.
(`kill -9` during `lcsynth generate` is tests/test_kill_resume.py.)
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from conftest import text
from fake_openai import FakeOpenAI
from qa_run import answer, doc_text, lcsynth, read_jsonl, snapshot, unit_keys, write_corpus, write_recipe
from test_hub import hub, knotted_run  # noqa: F401 - `hub` is a fixture
from test_pipeline import corpus, numbered_reply, recipe

from lcsynth.errors import ConfigError, OutputError
from lcsynth.out.hub import dry_run as write_folder
from lcsynth.out.sink import RunWriter
from lcsynth.run.local import run_recipe
from lcsynth.run.runner import UnitRunner

ESSAY = """\
name: t/essay
method: template
variables: {document: {type: string}}
messages: [{role: user, content: "{{ document }}\\nWrite at length."}]
parse: text
"""
ESSAY_ROW = """\
name: t/essay_row
method: template
variables: {document: {type: string}, output: {type: string}}
messages:
  - {role: user, content: "{{ document }}"}
  - {role: assistant, content: "{{ output }}"}
"""
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
SPLITS = "train=0.4,test=0.3,dev=0.3"


def essay_run(tmp_path, scripted, units: int = 600, chars: int = 40_000):
    """A finished run of long SFT rows (a scripted backend, a fake, writes the answers): about 25 MB of shards."""
    (tmp_path / "essays").mkdir()
    (tmp_path / "essays" / "essay.yaml").write_text(ESSAY)
    (tmp_path / "essays" / "row.yaml").write_text(ESSAY_ROW)
    path = write_corpus(tmp_path, [f"Document {i} is about topic{i}." for i in range(units)])

    def reply(request):
        doc = request.messages[-1][1].split(" is about")[0]
        rng = random.Random(doc)
        return text(doc + ": " + " ".join(rng.choice(WORDS) for _ in range(chars // 6)))

    spec = recipe(path, templates=[str(tmp_path / "essays")], output={"name": "essays", "shard_rows": 400},
                  methods=[{"name": "template", "template": "t/essay", "row_template": "t/essay_row"}])
    return asyncio.run(run_recipe(spec, scripted(reply), show_progress=False)).run_dir


def popen_lcsynth(*args, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lcsynth.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **options)


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 60) -> bool:
    """`kill -9` the process as soon as `ready()` holds; False if it ended (or the time ran out) first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.kill()
            process.wait(10)
            return True
        time.sleep(0.003)
    process.kill()
    process.wait(10)
    return False


@pytest.mark.timeout(240)
def test_kill_9_during_export_leaves_no_torn_file_and_the_rerun_completes(tmp_path, scripted, fmt="parquet"):
    run_dir = essay_run(tmp_path, scripted)
    shards = snapshot(run_dir)
    reference = lcsynth("export", run_dir, "--to", fmt, "--split", SPLITS, "--out", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    expected = snapshot(tmp_path / "reference" / "sft")
    assert sorted(expected) == [f"{split}.{fmt}" for split in ("dev", "test", "train")]
    target = run_dir / "export" / fmt / "sft"

    def files():
        return [p.name for p in target.glob("*")] if target.exists() else []

    started = time.monotonic()
    whole = lcsynth("export", run_dir, "--to", fmt, "--split", SPLITS, "--out", tmp_path / "timed")
    seconds = time.monotonic() - started
    assert whole.returncode == 0
    moments = {
        "as soon as the first file appears": lambda: bool(files()),
        "as soon as one file is in place": lambda: any(not n.startswith(".") for n in files()),
        "at a random moment": lambda t=time.monotonic: t() > at,
    }
    rng, torn = random.Random(5), 0
    for moment, ready in moments.items():
        for _ in range(3):  # on a busy machine the export may finish before the moment is seen: try again
            shutil.rmtree(target, ignore_errors=True)
            at = time.monotonic() + rng.uniform(0.2, seconds)
            killed = kill_when(popen_lcsynth("export", run_dir, "--to", fmt, "--split", SPLITS), ready)
            if killed and (moment != "as soon as the first file appears" or "partial" in " ".join(files())):
                break  # (the first moment is meant to cut a file in the middle of its writing)
        else:
            assert moment == "at a random moment", f"no kill landed {moment}"  # a random moment may come after
        torn += any(n.endswith(".partial") for n in files())
        for name, data in snapshot(target).items() if target.exists() else ():
            if name.startswith("."):
                assert name.endswith(".partial"), name  # the file being written when the process died
            else:
                assert data == expected[name], f"{name} is torn after a kill {moment}"
    assert torn >= 1  # at least one kill landed in the middle of writing a file

    again = lcsynth("export", run_dir, "--to", fmt, "--split", SPLITS)
    assert again.returncode == 0, again.stderr
    assert snapshot(target) == expected  # every file whole, nothing half written left behind
    assert {k: v for k, v in snapshot(run_dir).items() if not k.startswith("export/")} == shards


@pytest.mark.timeout(240)
def test_kill_9_during_push_commits_whole_or_nothing_and_the_rerun_commits_once(hub, tmp_path):  # noqa: F811
    run_dir = knotted_run(tmp_path)
    write_folder(run_dir, tmp_path / "staged", "alice/knots")  # exactly what a push uploads
    expected = {".gitattributes", *snapshot(tmp_path / "staged")}
    hub.delay = 0.3  # each request waits, so a kill lands between the steps of a push (even on a busy machine)

    def seen(predicate):
        return lambda: any(predicate(method, path) for method, path in list(hub.requests))

    moments = {
        "at the first request": seen(lambda method, path: True),
        "while Parquet is uploaded": seen(lambda method, path: method == "PUT"),
        "once the commit was sent": seen(lambda method, path: "/commit/" in path),
    }
    for moment, ready in moments.items():
        hub.requests.clear()
        assert kill_when(popen_lcsynth("push", run_dir, "--repo", "alice/knots"), ready), moment
        time.sleep(hub.delay + 0.2)  # let the Hub finish what it had been sent
        repo = hub.repos.get("alice/knots")
        for commit in repo.branches["main"][1:] if repo else ():  # every commit is the whole upload, never part
            assert set(commit.files) == expected, moment

    done = lcsynth("push", run_dir, "--repo", "alice/knots")
    assert done.returncode == 0, done.stderr
    commits = hub.repos["alice/knots"].branches["main"]
    assert [c.summary for c in commits] == ["initial commit", "lcsynth run knots"]  # one commit, not one per try
    staged = snapshot(tmp_path / "staged")
    assert {p: d for p, d in commits[-1].files.items() if p != ".gitattributes"} == staged
    assert "unchanged:" in done.stdout  # the commit sent before the last kill had landed


def test_a_second_run_on_the_same_folder_is_refused_and_a_dead_runs_lock_is_not(tmp_path):
    server = FakeOpenAI(default=("ok", None), responder=answer, delay=0.2).start_in_thread()  # a run of 6 s or more
    try:
        write_corpus(tmp_path, [doc_text(i) for i in range(60)])
        write_recipe(tmp_path, server.url, backend={"max_concurrency": 2}, limits={"max_in_flight": 2})
        run_dir, lock = tmp_path / "out" / "run", tmp_path / "out" / ".run.lock"

        def holds(process):
            return lambda: lock.exists() and lock.read_text().strip() == str(process.pid)

        first = popen_lcsynth("generate", "r.yaml", "-q", cwd=tmp_path)
        deadline = time.monotonic() + 60
        while not holds(first)() and time.monotonic() < deadline:
            time.sleep(0.01)
        second = lcsynth("generate", "r.yaml", "-q", cwd=tmp_path)
        assert second.returncode == 2 and first.poll() is None
        assert second.stderr.strip() == (f"error: output: {run_dir} is in use by another lcsynth process (pid "
                                         f"{first.pid}); wait for it to finish or choose another output.name")
        assert first.wait(120) == 0, first.stderr.read()
        keys = unit_keys(run_dir)
        assert len(keys) == len(set(keys)) == 60  # the refused run wrote nothing into it

        third = popen_lcsynth("generate", "r.yaml", "-q", "--set", "seed=1", cwd=tmp_path)
        assert kill_when(third, lambda: holds(third)() and any(run_dir.glob("*.partial")))
        assert lock.read_text().strip() == str(third.pid)  # the dead process's pid is still in the file
        fourth = lcsynth("generate", "r.yaml", "-q", "--set", "seed=1", cwd=tmp_path)
        assert fourth.returncode == 0, fourth.stderr
    finally:
        server.stop()
    keys = unit_keys(run_dir)
    assert len(keys) == len(set(keys)) == 60 and len(read_jsonl(run_dir / "sft-00000.jsonl")) == 60
    assert not (tmp_path / "out" / ".run.previous").exists()


def test_a_run_that_fails_leaves_the_finished_run_as_it_was(tmp_path, scripted, monkeypatch):
    path = corpus(tmp_path, [f"The doc says item{i}. " * 20 for i in range(12)])
    first = asyncio.run(run_recipe(recipe(path), scripted(numbered_reply), show_progress=False))
    before = snapshot(first.run_dir)
    write = RunWriter._write

    def disk_full_after_some_rows(self, name, row):
        if sum(self.rows.values()) >= 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, name, row)

    monkeypatch.setattr(RunWriter, "_write", disk_full_after_some_rows)
    with pytest.raises(OutputError, match=r"^output: writing out/run: No space left on device$"):
        asyncio.run(run_recipe(recipe(path, seed=1), scripted(numbered_reply), show_progress=False))
    assert snapshot(first.run_dir) == before and not (tmp_path / "out" / ".run.previous").exists()

    monkeypatch.setattr(RunWriter, "_write", write)
    replaced = asyncio.run(run_recipe(recipe(path, seed=1), scripted(numbered_reply), show_progress=False))
    manifest = json.loads((replaced.run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 1 and not (tmp_path / "out" / ".run.previous").exists()


class Interrupted(BaseException):
    """Stands for Ctrl-C or a lost process: not an error the run recovers from, so the partial run stays."""


def test_an_interrupted_replacement_keeps_the_finished_run_until_it_completes(tmp_path, scripted, monkeypatch):
    monkeypatch.setattr(UnitRunner, "checkpoint_seconds", 0.0)
    path = corpus(tmp_path, [f"The doc says item{i}. " * 20 for i in range(12)])
    first = asyncio.run(run_recipe(recipe(path), scripted(numbered_reply), show_progress=False))
    before, previous = snapshot(first.run_dir), tmp_path / "out" / ".run.previous"
    calls = []

    def interrupted_midway(request):
        calls.append(request)
        if len(calls) > 20:
            raise Interrupted
        return numbered_reply(request)

    with pytest.raises(Interrupted):
        asyncio.run(run_recipe(recipe(path, seed=1, limits={"max_in_flight": 2}), scripted(interrupted_midway),
                               show_progress=False))
    assert snapshot(previous) == before and (first.run_dir / "checkpoint.json").exists()
    partial = snapshot(first.run_dir)
    with pytest.raises(ConfigError, match="holds an unfinished run of a different recipe"):  # refused: touches nothing
        asyncio.run(run_recipe(recipe(path, seed=2), scripted(numbered_reply), show_progress=False))
    assert snapshot(previous) == before and snapshot(first.run_dir) == partial
    resumed = asyncio.run(run_recipe(recipe(path, seed=1), scripted(numbered_reply), show_progress=False))
    assert resumed.manifest["seed"] == 1 and resumed.rows == {"sft": 24} and not previous.exists()
