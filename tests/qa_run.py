"""A small real run for fault, crash and security tests: the `template` method (JSON answers validated against a
schema) on a JSONL corpus, through the openai backend, against a loopback server (tests/fault_server.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.config import Recipe, validate_recipe

QA_TEMPLATE = """\
name: t/qa
method: template
variables: {document: {type: string}}
messages:
  - role: user
    content: |
      {{ document }}

      Write one question about the text above and answer it. Reply as JSON with keys question and answer.
response_schema:
  type: object
  properties:
    question: {type: string, minLength: 10, maxLength: 200}
    answer: {type: string, minLength: 1, maxLength: 400}
  required: [question, answer]
  additionalProperties: false
parse: json
defaults: {max_tokens: 64, temperature: 0.7}
"""
ROW_TEMPLATE = """\
name: t/qa_row
method: template
variables: {document: {type: string}, output: {type: object}}
messages:
  - {role: user, content: "{{ document }}\\n\\n{{ output.question }}"}
  - {role: assistant, content: "{{ output.answer }}"}
"""
_TOPIC = re.compile(r"topic(\d+)")


def doc_text(i: int, repeat: int = 8) -> str:
    return f"Document {i} is about topic{i}. " * repeat


def answer(body: dict) -> str:
    """A valid JSON answer naming the topic of the document in the prompt."""
    prompt = body.get("prompt") or body["messages"][-1]["content"]
    match = _TOPIC.search(prompt)
    topic = match.group(0) if match else "nothing"
    return json.dumps({"question": f"What is this document about, {topic}?", "answer": topic})


def write_corpus(folder: Path, texts: list[str], name: str = "corpus.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def write_templates(folder: Path) -> Path:
    templates = folder / "qa_templates"
    templates.mkdir(exist_ok=True)
    (templates / "qa.yaml").write_text(QA_TEMPLATE)
    (templates / "qa_row.yaml").write_text(ROW_TEMPLATE)
    return templates


def recipe_data(folder: Path, url: str, **sections: Any) -> dict[str, Any]:
    """A recipe for `folder` (corpus.jsonl and qa_templates/ inside it); `sections` update its sections."""
    write_templates(folder)
    data: dict[str, Any] = {
        "corpus": {"type": "jsonl", "path": str(folder / "corpus.jsonl")},
        "templates": [str(folder / "qa_templates")],
        "methods": [{"name": "template", "template": "t/qa", "row_template": "t/qa_row"}],
        "backend": {"type": "openai", "base_url": url, "model": "fake", "tokenizer": str(bundled_gguf()),
                    "context_length": 4096, "max_retries": 4, "retry_backoff": 0.01, "retry_backoff_max": 0.05,
                    "timeout": 2.0, "max_concurrency": 8},
        "limits": {"max_in_flight": 8},
        "output": {"root": str(folder / "out"), "name": "run"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def qa_recipe(folder: Path, url: str, **sections: Any) -> Recipe:
    return validate_recipe(recipe_data(folder, url, **sections), "test")


def write_recipe(folder: Path, url: str, name: str = "r.yaml", **sections: Any) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(recipe_data(folder, url, **sections)))
    return path


def lcsynth(*args: Any, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120,
            **popen: Any) -> subprocess.CompletedProcess:
    """Run the real command line in a new process."""
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env, **popen)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def unit_keys(run_dir: Path) -> list[tuple[str, Any]]:
    """(doc_id, sample) of every row and every reject of a finished run."""
    keys = [(r["meta"]["doc_id"], r["meta"]["sample"]) for shard in sorted(run_dir.glob("sft-*.jsonl"))
            for r in read_jsonl(shard)]
    return keys + [(r["doc_id"], r["sample"]) for r in read_jsonl(run_dir / "rejects.jsonl")]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
