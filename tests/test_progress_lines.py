"""A run whose stderr is a pipe (a log, a CI console) prints plain progress lines while it runs."""

import json
import os
import subprocess
import sys

from fake_openai import FakeOpenAI

from lcsynth.backends.llamacpp import bundled_gguf


def reply(body):
    if "prompt" in body:  # a self-query: every third document gets no question, so there are rejects
        topic = body["prompt"].split("says ", 1)[1].split(".", 1)[0]
        return "" if int(topic.removeprefix("topic")) % 3 == 0 else f"What does {topic} mean?"
    return "It means " + body["messages"][-1]["content"][:40]


def test_progress_lines_on_a_pipe(tmp_path):
    docs = [{"id": f"d{i}", "text": f"This document says topic{i}. " * 25} for i in range(12)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    server = FakeOpenAI(default=("ok", None), responder=reply, delay=0.1).start_in_thread()
    try:
        (tmp_path / "r.yaml").write_text(
            "corpus: {type: jsonl, path: c.jsonl}\nmethods: [{name: longmagpie}]\n"
            f"backend: {{type: openai, base_url: '{server.url}', model: fake, tokenizer: '{bundled_gguf()}', "
            "max_concurrency: 1}\n")
        result = subprocess.run([sys.executable, "-m", "lcsynth.cli", "generate", "r.yaml", "--set",
                                 "limits.max_documents=12"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ, "LCSYNTH_PROGRESS_SECONDS": "0.3"})
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 3, result.stderr
    assert "\x1b[" not in result.stderr.split("run summary")[0]  # no terminal control codes in a log
    last = lines[-1]
    assert "12/12 units (100%)" in last and "rows 8" in last and "rejects 4 (empty_query 4)" in last
    assert "tok/s" in last and "ETA 0:00:00" in last
    assert any("ETA" in line and "100%" not in line for line in lines[:-1])
