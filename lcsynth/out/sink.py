"""Writes a run's rows (in shards) and rejects as JSONL: appended as units commit, checkpointed, finalised.

Rows of each kind go to `<kind>-00000.jsonl`, `<kind>-00001.jsonl`, … of `shard_rows` rows each; rejects to
`rejects.jsonl`. A file grows as `<name>.partial` and is fsynced and renamed into place when full (or when
the run ends). A checkpoint records the open files' byte lengths and the shard counters; resuming moves
the open shard back to `.partial` if it was renamed after the checkpoint, truncates every file to its
checkpointed length and deletes shards begun after it, so every line is written exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lcsynth.prompts.schemas import validation_error
from lcsynth.redaction import known_secrets, redact

REJECTS = "rejects.jsonl"


def dump_line(row: dict[str, Any]) -> str:
    """One JSONL line; the exact bytes are part of the reproducibility contract."""
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def shard_name(kind: str, index: int) -> str:
    """File name of shard `index` of a row kind.

    >>> shard_name("sft", 3)
    'sft-00003.jsonl'
    """
    return f"{kind}-{index:05d}.jsonl"


class RunWriter:
    """Rows are validated against `schemas/<kind>.json` first; a row that fails becomes a reject."""

    def __init__(self, run_dir: Path, shard_rows: int = 100_000, snapshot: dict[str, Any] | None = None) -> None:
        self.run_dir, self.shard_rows = run_dir, shard_rows
        snapshot = snapshot or {}
        self.rows: Counter[str] = Counter(snapshot.get("rows", {}))
        self.rejects: Counter[str] = Counter(snapshot.get("rejects", {}))
        self.finished: dict[str, dict[str, Any]] = dict(snapshot.get("finished", {}))
        self._shards: dict[str, list[int]] = {k: list(v) for k, v in snapshot.get("shards", {}).items()}
        self._files: dict[str, IO[str]] = {}
        self._hashes: dict[str, Any] = {}
        secrets = known_secrets()  # read once: the environment does not change during a run
        self._scrub = lambda text: redact(text, secrets)
        if snapshot:
            self._discard_after(snapshot)
        for name, length in snapshot.get("files", {}).items():
            self._reopen(name, length)

    def _discard_after(self, snapshot: dict[str, Any]) -> None:
        keep = set(snapshot.get("files", {})) | set(self.finished)
        for path in self.run_dir.glob("*-[0-9][0-9][0-9][0-9][0-9].jsonl*"):
            name = path.name.removesuffix(".partial")
            match = re.fullmatch(r"(.+)-(\d{5})\.jsonl", name)
            if match and name not in keep and int(match.group(2)) >= self._shards.get(match.group(1), [0])[0]:
                path.unlink()

    def _reopen(self, name: str, length: int) -> None:
        partial, final = self.run_dir / f"{name}.partial", self.run_dir / name
        if not partial.exists() and final.exists():  # finished after the checkpoint: take it back
            os.replace(final, partial)
        with partial.open("r+b") as raw:
            raw.truncate(length)
            self._hashes[name] = hashlib.sha256(raw.read())
        self._files[name] = partial.open("a", encoding="utf-8")

    def _handle(self, name: str) -> IO[str]:
        if name not in self._files:
            self._files[name] = (self.run_dir / f"{name}.partial").open("w", encoding="utf-8")
            self._hashes[name] = hashlib.sha256()
        return self._files[name]

    def _write(self, name: str, row: dict[str, Any]) -> None:
        line = dump_line(row)
        self._handle(name).write(line)
        self._hashes[name].update(line.encode("utf-8"))

    def _finish(self, name: str, rows: int) -> None:
        handle = self._files.pop(name)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(self.run_dir / f"{name}.partial", self.run_dir / name)
        self.finished[name] = {"rows": rows, "sha256": self._hashes.pop(name).hexdigest()}

    def write_row(self, kind: str, row: dict[str, Any], unit: dict[str, Any]) -> bool:
        """Write a row if it is valid for its kind; otherwise record it as an `invalid_row` reject."""
        problem = validation_error(row, kind)
        if problem:
            self.write_reject(unit, "invalid_row", f"{kind}.json: {problem}", json.dumps(row)[:2000])
            return False
        shard = self._shards.setdefault(kind, [0, 0])
        name = shard_name(kind, shard[0])
        self._write(name, row)
        self.rows[kind] += 1
        shard[1] += 1
        if shard[1] >= self.shard_rows:
            self._finish(name, shard[1])
            shard[0], shard[1] = shard[0] + 1, 0
        return True

    def write_reject(self, unit: dict[str, Any], reason: str, detail: str = "", raw: str | None = None,
                     request_hash: str | None = None) -> None:
        """Record why a unit (or a whole document) produced nothing; credentials in the detail or raw text go."""
        detail, raw = self._scrub(detail), self._scrub(raw) if raw else raw  # a server may quote the key back
        self._write(REJECTS, {**unit, "reason": reason, "detail": detail, "raw": raw, "request_hash": request_hash})
        self.rejects[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        """Flush and fsync every open file; return what a resumed writer needs."""
        lengths = {}
        for name, handle in self._files.items():
            handle.flush()
            os.fsync(handle.fileno())
            lengths[name] = handle.tell()
        return {"files": lengths, "rows": dict(self.rows), "rejects": dict(self.rejects),
                "shards": {k: list(v) for k, v in self._shards.items()}, "finished": dict(self.finished)}

    def close(self) -> dict[str, dict[str, Any]]:
        """Finish every open file (an empty rejects.jsonl too); return rows and sha256 per file."""
        self._handle(REJECTS)
        for kind, (index, rows) in self._shards.items():
            if rows:
                self._finish(shard_name(kind, index), rows)
        self._finish(REJECTS, sum(self.rejects.values()))
        return dict(sorted(self.finished.items()))

    def abort(self) -> None:
        """Close every open file after a failure, as far as the disk allows (a resumed run cuts back anyway)."""
        for handle in self._files.values():
            try:
                handle.close()
            except OSError:
                pass  # the file is closed even when its last flush failed
        self._files.clear()

    def iter_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every row written so far (finished shards, then open ones), in order, with its kind."""
        self.snapshot()
        names = sorted([*(n for n in self.finished if n != REJECTS), *(n for n in self._files if n != REJECTS)])
        for name in names:
            path = self.run_dir / name if name in self.finished else self.run_dir / f"{name}.partial"
            kind = name.rsplit("-", 1)[0]
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    yield kind, json.loads(line)
