"""Batch rounds: write uncached requests as OpenAI batch JSONL, read the provider's results into the cache.

A round is `lcsynth generate RECIPE --batch-out requests.jsonl` (cached answers are used, every other
request goes to the file and its unit waits), the provider's batch job (OpenAI Batch API, `vllm run-batch`),
then `lcsynth ingest RUN --batch-results results.jsonl`. Multi-stage methods advance one stage per round.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lcsynth.backends.base import Backend, Completion, Request, Usage
from lcsynth.backends.cache import RequestCache
from lcsynth.backends.openai_compat import openai_body
from lcsynth.config import BackendSpec
from lcsynth.errors import InputError, Pending


class BatchBackend:
    """Stands in for a backend during a batch round: records each request it is asked for, answers none."""

    def __init__(self, inner: Backend, spec: BackendSpec) -> None:
        self.inner, self.spec = inner, spec
        self.model_id, self.tokenizer = inner.model_id, inner.tokenizer
        self.chat_template, self.context_length = inner.chat_template, inner.context_length
        self.max_concurrency = max(inner.max_concurrency, 64)  # nothing is sent, so nothing to throttle
        self.lines: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        """Nothing is sent during a batch round, so nothing to check."""

    async def complete(self, request: Request) -> Completion:
        """Record the request under its hash and leave its unit pending."""
        key = request.digest(self.model_id)
        path, body = openai_body(request, self.spec.model or self.model_id, self.spec.structured_output,
                                 self.spec.options)
        self.lines[key] = {"custom_id": key, "method": "POST", "url": path, "body": body}
        raise Pending(key)

    def write(self, path: Path) -> int:
        """Write the recorded requests (sorted, so a rerun writes the same file); return how many."""
        tmp = path.with_suffix(path.suffix + ".partial")
        with tmp.open("w", encoding="utf-8") as handle:
            for key in sorted(self.lines):
                handle.write(json.dumps(self.lines[key], ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        return len(self.lines)

    async def aclose(self) -> None:
        """Close the wrapped backend."""
        await self.inner.aclose()


def completion_from_result(row: dict[str, Any]) -> Completion | None:
    """A completion from one line of an OpenAI batch output file, or None if that request failed."""
    response = row.get("response") or {}
    body = response.get("body") or {}
    if row.get("error") or response.get("status_code", 200) != 200 or not body.get("choices"):
        return None
    choice = body["choices"][0]
    text = choice.get("text")
    if text is None:
        text = (choice.get("message") or {}).get("content") or ""
    usage = body.get("usage") or {}
    return Completion(text, choice.get("finish_reason") or "stop",
                      Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)))


def ingest_results(results: Path, cache: RequestCache, model_id: str) -> tuple[int, int]:
    """Store every successful result in the cache; return (stored, failed). Failed ones are asked again."""
    stored = failed = 0
    try:
        handle = results.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{results}: cannot read batch results ({exc.strerror})") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = row["custom_id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{results}:{number}: not an OpenAI batch result line (needs custom_id)") from None
            completion = completion_from_result(row)
            if completion is None:
                failed += 1
                continue
            cache.put(key, model_id, completion)
            stored += 1
    return stored, failed
