"""Writes a run's rows and rejects as JSONL: appended as units commit, checkpointed, finalised atomically.

Each file grows as `<name>.partial`. A checkpoint flushes and fsyncs them and records their byte lengths;
resuming truncates each file back to its checkpointed length (dropping anything written after it, which
the resumed run writes again), so every line is written exactly once. `close` renames them into place.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import IO, Any

from lcsynth.schemas import validation_error


def dump_line(row: dict[str, Any]) -> str:
    """One JSONL line; the exact bytes are part of the reproducibility contract."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


class RunWriter:
    """Appends rows to `<kind>.jsonl.partial` and rejects to `rejects.jsonl.partial`, renamed on close.

    Rows are validated against `schemas/<kind>.json` first; a row that fails becomes a reject.
    """

    def __init__(self, run_dir: Path, snapshot: dict[str, Any] | None = None) -> None:
        self.run_dir = run_dir
        self.rows: Counter[str] = Counter((snapshot or {}).get("rows", {}))
        self.rejects: Counter[str] = Counter((snapshot or {}).get("rejects", {}))
        self._files: dict[str, IO[str]] = {}
        self._hashes: dict[str, Any] = {}
        for name, length in (snapshot or {}).get("files", {}).items():
            self._reopen(name, length)

    def _reopen(self, name: str, length: int) -> None:
        path = self.run_dir / f"{name}.partial"
        with path.open("r+b") as raw:
            raw.truncate(length)
            self._hashes[name] = hashlib.sha256(raw.read())
        self._files[name] = path.open("a", encoding="utf-8")

    def _handle(self, name: str) -> IO[str]:
        if name not in self._files:
            self._files[name] = (self.run_dir / f"{name}.partial").open("w", encoding="utf-8")
            self._hashes[name] = hashlib.sha256()
        return self._files[name]

    def _write(self, name: str, row: dict[str, Any]) -> None:
        line = dump_line(row)
        self._handle(name).write(line)
        self._hashes[name].update(line.encode("utf-8"))

    def write_row(self, kind: str, row: dict[str, Any], unit: dict[str, Any]) -> bool:
        """Write a row if it is valid for its kind; otherwise record it as an `invalid_row` reject."""
        problem = validation_error(row, kind)
        if problem:
            self.write_reject(unit, "invalid_row", f"{kind}.json: {problem}", json.dumps(row)[:2000])
            return False
        self._write(f"{kind}.jsonl", row)
        self.rows[kind] += 1
        return True

    def write_reject(self, unit: dict[str, Any], reason: str, detail: str = "", raw: str | None = None,
                     request_hash: str | None = None) -> None:
        """Record why a unit (or a whole document) produced nothing."""
        self._write("rejects.jsonl", {**unit, "reason": reason, "detail": detail, "raw": raw,
                                      "request_hash": request_hash})
        self.rejects[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        """Flush and fsync every file; return what a resumed writer needs (file lengths and counts)."""
        lengths = {}
        for name, handle in self._files.items():
            handle.flush()
            os.fsync(handle.fileno())
            lengths[name] = handle.tell()
        return {"files": lengths, "rows": dict(self.rows), "rejects": dict(self.rejects)}

    def close(self) -> dict[str, dict[str, Any]]:
        """Flush, fsync and rename every file into place; return rows and sha256 per file."""
        self._handle("rejects.jsonl")  # a run with no rejects still says so with an empty file
        self.snapshot()
        summary = {}
        for name, handle in sorted(self._files.items()):
            handle.close()
            os.replace(self.run_dir / f"{name}.partial", self.run_dir / name)
            kind = name.removesuffix(".jsonl")
            count = sum(self.rejects.values()) if kind == "rejects" else self.rows[kind]
            summary[name] = {"rows": count, "sha256": self._hashes[name].hexdigest()}
        return summary
