"""Filtering the indexed lines of a run: kind, method, reject reason, token range, and text search on disk."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lcsynth.view.index import REJECTS, RunIndex

SEARCH_SECONDS = 2.0  # a text search reads lines from disk; it stops after this long and says where it got to


@dataclass(frozen=True)
class Filter:
    """What the list shows; empty fields match everything."""

    kind: str = ""
    method: str = ""
    reason: str = ""
    min_tokens: int | None = None
    max_tokens: int | None = None
    text: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filter:
        """Read the filter from URL parameters; numbers that do not parse are ignored."""

        def number(key: str) -> int | None:
            try:
                return int(query[key]) if query.get(key, "").strip() else None
            except ValueError:
                return None

        return cls(query.get("kind", ""), query.get("method", ""), query.get("reason", ""),
                   number("min"), number("max"), query.get("q", ""))


def candidates(index: RunIndex, wanted: Filter) -> Iterator[tuple[str, int]]:
    """(file, line) of every indexed line the filter's fields other than text match, in file order."""
    with index.lock:
        files = list(index.files.values())
        method = index._numbers.get(wanted.method, -1) if wanted.method else None
        reason = index._numbers.get(wanted.reason, -1) if wanted.reason else None
    for file in files:
        if wanted.kind and wanted.kind != file.kind:
            continue
        if reason is not None and file.name != REJECTS:
            continue
        count = len(file.offsets)
        for i in range(count):
            if method is not None and file.methods[i] != method:
                continue
            if reason is not None and file.reasons[i] != reason:
                continue
            tokens = file.tokens[i]
            if wanted.min_tokens is not None and (tokens < 0 or tokens < wanted.min_tokens):
                continue
            if wanted.max_tokens is not None and (tokens < 0 or tokens > wanted.max_tokens):
                continue
            yield file.name, i


def needle(text: str) -> bytes:
    r"""The search text as it appears inside a JSON line (escaped as the sink writes strings).

    >>> needle('say "hi"')
    b'say \\"hi\\"'
    """
    return json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")


def select(index: RunIndex, wanted: Filter, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """One page of matching lines, with the total when it is known (a text search may stop early)."""
    found: list[tuple[str, int]] = []
    total, complete, deadline = 0, True, time.monotonic() + SEARCH_SECONDS
    pattern = needle(wanted.text) if wanted.text else b""
    for name, line in candidates(index, wanted):
        if pattern:
            if time.monotonic() > deadline:
                complete = False
                break
            if pattern not in index.read(name, line):
                continue
        if offset <= total < offset + limit:
            found.append((name, line))
        total += 1
        if pattern and total >= offset + limit:
            complete = False  # enough for this page; a search never reads the whole run for a count
            break
    return {"rows": [entry(index, name, line) for name, line in found], "total": total, "complete": complete}


def entry(index: RunIndex, name: str, line: int) -> dict[str, Any]:
    """What the list shows of one line: its id, kind, method, tokens, reason and a preview."""
    with index.lock:
        file = index.files[name]
        tokens, method = file.tokens[line], index.strings[file.methods[line]]
        reason, doc = index.strings[file.reasons[line]], file.docs[line]
    return {"id": f"{name}:{line}", "kind": file.kind, "method": method, "tokens": tokens if tokens >= 0 else None,
            "reason": reason or None, "doc": doc, "preview": preview(index.head(name, line))}


def preview(head: bytes, size: int = 160) -> str:
    r"""The start of the first text field of a line's head (which may be cut anywhere).

    >>> preview(b'{"messages":[{"role":"user","content":"Line one\\nand \\"two\\"')
    'Line one and "two"'
    """
    text = head.decode("utf-8", errors="ignore")
    for key in ('"content":"', '"text":"', '"detail":"', '"raw":"'):
        at = text.find(key)
        if at >= 0:
            body = text[at + len(key):at + len(key) + size * 2]
            break
    else:
        return ""
    end = _string_end(body)
    body = body[:end] if end is not None else body.rstrip("\\")
    try:
        value = json.loads(f'"{body}"')
    except ValueError:
        value = body
    return " ".join(value.split())[:size]


def _string_end(body: str) -> int | None:
    """Where a JSON string body ends (its closing quote), or None when the head cut it."""
    escaped = False
    for i, char in enumerate(body):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return i
    return None
