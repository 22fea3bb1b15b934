"""Fitting documents in worker processes gives what fitting them in the run's process gives, in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.config import validate_recipe
from lcsynth.corpus.demo import iter_demo_documents
from lcsynth.corpus.documents import fitted_documents
from lcsynth.corpus.fitting import Fitter, picklable
from lcsynth.text.tokens import fit_tokens, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(bundled_gguf()))


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Slices of real documents, 300 to 6,000 characters."""
    out = []
    for doc in iter_demo_documents():
        out += [doc.text[i:i + 300 + (i % 5700)] for i in range(0, len(doc.text) - 6000, 4000)]
        if len(out) >= 400:
            return out[:400]
    return out


def items(texts: list[str]) -> list[tuple[int, str | None]]:
    """Numbered texts, every seventh without text (it passes through unfitted)."""
    return [(i, None if i % 7 == 0 else text) for i, text in enumerate(texts)]


def test_workers_fit_exactly_as_the_run_would_in_order(tokenizer, texts):
    fitter = Fitter(tokenizer, processes=1, start_after=0)
    fitter.start(wait=True)
    got = list(fitter.fit(iter(items(texts)), 500, "head_tail"))
    assert fitter.pooled > 0  # the worker did fit batches
    assert [i for i, _ in got] == list(range(len(texts)))
    for (_, text), (_, fitted) in zip(items(texts), got, strict=True):
        assert fitted == (None if text is None else fit_tokens(tokenizer, text, 500, "head_tail"))
    assert any(f is not None and f[1] < f[2] for _, f in got)  # some were cut
    assert fitter._pool is None  # the workers stop with the stream


def test_a_worker_that_dies_leaves_the_run_fitting_by_itself(tokenizer, texts, caplog):
    fitter = Fitter(tokenizer, processes=1, start_after=0, batch=8)
    fitter.start(wait=True)
    stream = fitter.fit(iter(items(texts)), 500, "head")
    first = [next(stream) for _ in range(40)]
    for pid in list(fitter._pool._processes):  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
    rest = list(stream)
    assert [i for i, _ in first + rest] == list(range(len(texts)))
    assert [f for _, f in first + rest] == [None if t is None else fit_tokens(tokenizer, t, 500, "head")
                                           for _, t in items(texts)]
    assert fitter.processes == 0 and "counting in the run's own process" in caplog.text


def test_a_tokenizer_no_worker_can_rebuild_is_used_in_process(texts):
    class Local:
        name = "local"

        def encode(self, text: str) -> list[int]:
            return list(range(len(text.split())))

        def decode(self, ids: list[int]) -> str:
            return " ".join("w" for _ in ids)

        def __reduce__(self):
            raise TypeError("lives here only")

    assert not picklable(Local())
    fitter = Fitter(Local(), processes=2, start_after=0)
    assert fitter.processes == 0
    assert list(fitter.fit(iter([(0, "a b c")]), 10, "head")) == [(0, ("a b c", 3, 3))]


def test_fitted_documents_are_the_same_with_and_without_workers(tmp_path, tokenizer, texts):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    recipe = validate_recipe({"corpus": {"type": "jsonl", "path": str(corpus), "min_chars": 400},
                              "backend": {"type": "none"}, "methods": [{"name": "untie_knots"}],
                              "context": {"overflow": "head_tail"}}, "test")
    pooled = Fitter(tokenizer, processes=1, start_after=0)
    pooled.start(wait=True)
    def plain(docs):  # a Reject is an exception: compared by what it says
        return [(doc, None if r is None else (r.reason, r.detail)) for doc, r in docs]

    with_workers = plain(fitted_documents(recipe, tokenizer, 400, fitter=pooled))
    alone = plain(fitted_documents(recipe, tokenizer, 400, fitter=Fitter(tokenizer, processes=0)))
    assert pooled.pooled > 0
    assert with_workers == alone
    assert {r[0] for _, r in alone if r is not None} == {"document_too_short"}
    assert any(d.meta["truncated"] for d, r in alone if r is None)


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    # a spawned worker imports the parent's __main__: an unguarded script would run again in it
    script, marker = tmp_path / "unguarded.py", tmp_path / "ran.txt"
    script.write_text(
        "import sys\n"
        "from lcsynth.backends.llamacpp import bundled_gguf\n"
        "from lcsynth.corpus.fitting import Fitter\n"
        "from lcsynth.text.tokens import load_tokenizer\n"
        "open(sys.argv[1], 'a').write('ran\\n')\n"
        "fitter = Fitter(load_tokenizer(str(bundled_gguf())), processes=1, start_after=0)\n"
        "fitter.start(wait=True)\n"
        "out = list(fitter.fit(iter([(i, 'some text ' * i) for i in range(200)]), 50, 'head'))\n"
        "print(len(out), fitter.pooled, fitter.processes)\n")
    done = subprocess.run([sys.executable, str(script), str(marker)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.returncode == 0, done.stderr[-500:]
    count, pooled, processes = map(int, done.stdout.split())
    assert (count, processes) == (200, 1) and pooled > 0
    assert marker.read_text() == "ran\n"


def test_workers_end_when_their_run_is_killed(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(
        "import time\n"
        "from lcsynth.backends.llamacpp import bundled_gguf\n"
        "from lcsynth.corpus.fitting import Fitter\n"
        "from lcsynth.text.tokens import load_tokenizer\n"
        "fitter = Fitter(load_tokenizer(str(bundled_gguf())), processes=1, start_after=0)\n"
        "fitter.start(wait=True)\n"
        "print(*fitter._pool._processes, flush=True)\n"
        "time.sleep(60)\n")
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        workers = [int(pid) for pid in run.stdout.readline().split()]
        assert workers and all(alive(pid) for pid in workers)
    finally:
        run.kill()
        run.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
