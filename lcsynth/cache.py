"""The request cache: sqlite, keyed by the request hash, so a rerun never pays twice for the same call."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lcsynth.backends.base import Completion, Usage
from lcsynth.errors import InputError, OutputError


def _m001_responses(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE responses (
        request_hash TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)""")


# Schema changes are appended here, never edited: each runs once and is recorded in _migrations.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [("m001_responses", _m001_responses)]


class RequestCache:
    """request hash → completion, in one sqlite file (WAL, so readers never block the writer)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a usable cache file ({exc})") from None
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self.hits = 0

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
        done = {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
        for name, migration in MIGRATIONS:
            if name not in done:
                with self.db:
                    migration(self.db)
                    self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))

    def get(self, key: str) -> Completion | None:
        """The cached completion for a request hash, if any."""
        row = self.db.execute("SELECT text, finish_reason, prompt_tokens, completion_tokens FROM responses "
                              "WHERE request_hash = ?", (key,)).fetchone()
        if row is None:
            return None
        self.hits += 1
        return Completion(row[0], row[1], Usage(row[2], row[3]))

    def put(self, key: str, model: str, completion: Completion) -> None:
        """Store (or replace) a completion; a cache that cannot be written (disk full, locked) is a one-line error."""
        try:
            self.db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (key, model, completion.text, completion.finish_reason, completion.usage.prompt_tokens,
                             completion.usage.completion_tokens, time.time()))
        except sqlite3.OperationalError as exc:
            raise OutputError(f"cache: cannot write {self.path} ({exc})") from None

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def keys(self) -> Iterator[str]:
        """Every cached request hash."""
        return (row[0] for row in self.db.execute("SELECT request_hash FROM responses"))

    def stats(self) -> list[dict[str, Any]]:
        """Entries and token totals per model."""
        rows = self.db.execute("SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM responses "
                               "GROUP BY model ORDER BY model").fetchall()
        return [{"model": m, "entries": n, "prompt_tokens": p or 0, "completion_tokens": c or 0} for m, n, p, c in rows]

    def clear(self, model: str | None = None) -> int:
        """Delete every entry (or one model's); return how many went."""
        where, args = ("WHERE model = ?", (model,)) if model else ("", ())
        with self.db:
            count = self.db.execute(f"DELETE FROM responses {where}", args).rowcount
        self.db.execute("VACUUM")
        return count

    def export(self, path: Path) -> int:
        """Write every entry as JSONL (request_hash, model, text, finish_reason, usage); return the count."""
        count = 0
        with path.open("w", encoding="utf-8") as handle:
            for key, model, text, finish, prompt, completion in self.db.execute(
                    "SELECT request_hash, model, text, finish_reason, prompt_tokens, completion_tokens "
                    "FROM responses ORDER BY request_hash"):
                handle.write(json.dumps({"request_hash": key, "model": model, "text": text, "finish_reason": finish,
                                         "usage": {"prompt_tokens": prompt, "completion_tokens": completion}},
                                        ensure_ascii=False) + "\n")
                count += 1
        return count

    def close(self) -> None:
        """Close the database."""
        self.db.close()
