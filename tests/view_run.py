"""A real run with every kind of row and some rejects, for the viewer's tests.

KeyChain, Untie-the-Knots and NExtLong build rows by construction; LongPO asks a scripted OpenAI-compatible
server on 127.0.0.1 (a fake, bounded): a passage of even length gets one question too few (a reject).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys

from fake_openai import FakeOpenAI

from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.config import validate_recipe
from lcsynth.run.local import run_recipe

METHODS = [
    {"name": "untie_knots", "lengths": {"targets": ["4k"]}, "chunks": {2: 0.5, 3: 0.5}, "tracing_rows": 1},
    {"name": "nextlong", "lengths": {"targets": ["16k"]}},
    {"name": "keychain", "lengths": {"targets": ["4k"]}, "max_items": 3},
    {"name": "longpo", "chunk_tokens": 256, "questions": 2, "min_questions": 2, "answer_max_tokens": 64},
]


def reply(body):
    if "messages" not in body:
        return "fine"
    asked = "\n".join(m["content"] for m in body["messages"])
    if "different questions" in asked:
        few = len(asked) % 2 == 0
        return "1: What does the module named here provide to its callers?" + (
            "" if few else "\n2: Which function of the module is described first?")
    return f"An answer that read {len(asked)} characters of context."


def build_view_run(root, name="run", max_documents=4):
    """Run the recipe; returns the run folder."""
    server = FakeOpenAI(default=("ok", None), responder=reply).start_in_thread()
    try:
        data = {"corpus": {"type": "demo", "min_chars": 2000},
                "backend": {"type": "openai", "base_url": server.url, "model": "fake", "tokenizer": str(bundled_gguf()),
                            "context_length": 8192},
                "methods": METHODS, "limits": {"max_documents": max_documents},
                "output": {"root": str(root), "name": name}}
        summary = asyncio.run(run_recipe(validate_recipe(data, "test"), show_progress=False))
    finally:
        server.stop()
    return summary.run_dir


if __name__ == "__main__":  # python tests/view_run.py FOLDER: a run to look at
    run = build_view_run(sys.argv[1])
    print(run, json.loads((run / "manifest.json").read_text())["counts"])


@contextlib.contextmanager
def serving(run_dir, *extra):
    """`lcsynth view RUN_DIR --port 0` as a real process; yields its URL, stops it after."""
    process = subprocess.Popen([sys.executable, "-m", "lcsynth.cli", "view", str(run_dir), "--port", "0", *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()  # "viewing RUN at URL (Ctrl-C to stop)", or an error
        assert " at http://127.0.0.1:" in line, line + process.stderr.read()
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
