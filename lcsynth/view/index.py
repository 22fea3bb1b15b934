"""A run folder's rows and rejects, indexed by the byte offsets of their lines, read lazily.

Each line is read once, in blocks, to find where it ends and to parse its `meta` (the last key of a row,
so only the line's tail is decoded) or, for a reject, its small fields. The index keeps a few numbers and
names per line, never the text: a row is read again from disk when it is shown. Files still being
written (`*.partial`) are indexed up to their last whole line and followed as they grow; a file that
shrank (a resumed run cut it back) is indexed again.
"""

from __future__ import annotations

import json
import re
import threading
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lcsynth.out.rows import row_tokens

SHARD = re.compile(r"(?P<kind>[a-z]+)-\d{5}\.jsonl")
REJECTS = "rejects.jsonl"
BLOCK = 8 << 20
META_KEY = b',"meta":{'


def meta_of(line: bytes) -> dict[str, Any]:
    r"""The `meta` object of a row line, decoded from the line's tail.

    >>> meta_of(b'{"text":"a,\\"meta\\":{","meta":{"n_tokens":3}}')
    {'n_tokens': 3}
    """
    end = len(line.rstrip())
    at = line.rfind(META_KEY, 0, end)
    while at >= 0:
        try:
            value = json.loads(line[at + len(META_KEY) - 1:end - 1])
            return value if isinstance(value, dict) else {}
        except ValueError:
            at = line.rfind(META_KEY, 0, at)  # a key "meta" nested inside meta: the row's own is further left
    return {}


def names(kinds: Counter[str]) -> list[str]:
    """Names by count, most common first."""
    return [name for name, _ in kinds.most_common()]


@dataclass
class FileIndex:
    """Where each whole line of one file starts and ends, and what the filters need of it."""

    name: str
    kind: str
    scanned: int = 0
    offsets: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("l"))
    tokens: array = field(default_factory=lambda: array("l"))
    methods: array = field(default_factory=lambda: array("H"))
    reasons: array = field(default_factory=lambda: array("H"))
    docs: list[str] = field(default_factory=list)


class RunIndex:
    """The lines of a run's row shards and rejects; `refresh()` follows files as they are written."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir.resolve()
        self.files: dict[str, FileIndex] = {}
        self.strings: list[str] = [""]  # method and reason names, by number (0: none)
        self._numbers: dict[str, int] = {"": 0}
        self.lock = threading.RLock()
        self.method_counts: Counter[str] = Counter()
        self.reason_counts: Counter[str] = Counter()
        self.kind_counts: Counter[str] = Counter()
        self.indexing = False  # True while a refresh reads lines (the first one of a large run takes a while)

    def _number(self, name: str) -> int:
        if name not in self._numbers:
            self._numbers[name] = len(self.strings)
            self.strings.append(name)
        return self._numbers[name]

    def path_of(self, name: str) -> Path:
        """The file holding `name` now: the finished shard, or its `.partial` while it is written."""
        final = self.run_dir / name
        return final if final.exists() else self.run_dir / f"{name}.partial"

    def _found(self) -> dict[str, str]:
        found = {}
        for path in self.run_dir.iterdir():
            name = path.name.removesuffix(".partial")
            match = SHARD.fullmatch(name)
            if name == REJECTS:
                found[name] = "reject"
            elif match:
                found[name] = match.group("kind")
        return dict(sorted(found.items(), key=lambda item: (item[0] == REJECTS, item[0])))

    def refresh(self) -> bool:
        """Index what was written since the last call; True when anything changed."""
        self.indexing = True
        try:
            return self._refresh()
        finally:
            self.indexing = False

    def _refresh(self) -> bool:
        changed = False
        for name, kind in self._found().items():
            path = self.path_of(name)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue  # renamed between the listing and now; the next refresh finds it
            with self.lock:
                index = self.files.get(name)
                if index is None or size < index.scanned:
                    if index is not None:
                        self._forget(index)
                    index = self.files[name] = FileIndex(name, kind)
            if size > index.scanned:
                changed |= self._scan(index, path)
        return changed

    def _forget(self, index: FileIndex) -> None:
        for i in range(len(index.offsets)):
            self._count(index, i, -1)

    def _count(self, index: FileIndex, i: int, step: int) -> None:
        self.kind_counts[index.kind] += step
        self.method_counts[self.strings[index.methods[i]]] += step
        if index.kind == "reject":
            self.reason_counts[self.strings[index.reasons[i]]] += step

    def _scan(self, index: FileIndex, path: Path) -> bool:
        """Read whole lines from where the last scan stopped; a line still being written waits."""
        added = False
        with path.open("rb") as handle:
            handle.seek(index.scanned)
            carry = b""
            while True:
                block = handle.read(BLOCK)
                if not block:
                    break
                data = carry + block
                start = 0
                while (end := data.find(b"\n", start)) >= 0:
                    self._add(index, index.scanned, data[start:end + 1])
                    index.scanned += end + 1 - start
                    start = end + 1
                    added = True
                carry = data[start:]
        return added

    def _add(self, index: FileIndex, offset: int, line: bytes) -> None:
        if index.kind == "reject":
            try:
                record = json.loads(line)
            except ValueError:
                record = {}
            method, reason, tokens, doc = record.get("method"), record.get("reason"), None, record.get("doc_id")
        else:
            meta = meta_of(line)
            method, reason, tokens = meta.get("method"), None, row_tokens(meta)
            doc = meta.get("doc_id") or meta.get("source_doc_id") or meta.get("qa_id") or meta.get("source_doc")
        with self.lock:
            index.offsets.append(offset)
            index.lengths.append(len(line))
            index.tokens.append(tokens if isinstance(tokens, int) else -1)
            index.methods.append(self._number(str(method or "")))
            index.reasons.append(self._number(str(reason or "")))
            index.docs.append(str(doc or "")[:120])
            self._count(index, len(index.offsets) - 1, 1)

    def read(self, name: str, line: int) -> bytes:
        """The bytes of line `line` of file `name` (KeyError or IndexError when there is no such line)."""
        with self.lock:
            index = self.files[name]
            offset, length = index.offsets[line], index.lengths[line]
        with self.path_of(name).open("rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    def head(self, name: str, line: int, size: int = 1200) -> bytes:
        """The first `size` bytes of a line (for a preview)."""
        with self.lock:
            index = self.files[name]
            offset, length = index.offsets[line], index.lengths[line]
        with self.path_of(name).open("rb") as handle:
            handle.seek(offset)
            return handle.read(min(size, length))

    def summary(self) -> dict[str, Any]:
        """Counts for the filters: lines per kind, rows per method, rejects per reason."""
        with self.lock:
            return {"kinds": {k: n for k, n in self.kind_counts.most_common() if n},
                    "methods": {m: n for m, n in self.method_counts.most_common() if m and n},
                    "reasons": {r: n for r, n in self.reason_counts.most_common() if r and n},
                    "lines": sum(len(f.offsets) for f in self.files.values()),
                    "bytes": sum(f.scanned for f in self.files.values()), "indexing": self.indexing,
                    "files": {name: len(f.offsets) for name, f in self.files.items()}}
