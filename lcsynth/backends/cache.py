"""The request cache: sqlite, keyed by the request hash, so a rerun never pays twice for the same call.

Processes on other machines (Ray replicas) never write the main cache: each writes its own worker cache
(`<cache>.workers/worker-<id>.sqlite`, one writer, no shared memory) and reads the main cache as a frozen
snapshot; the driver merges the worker caches into the main one when the run ends, or when the next run
starts if a run was killed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from lcsynth.backends.base import Completion, Usage
from lcsynth.errors import InputError, OutputError


def _m001_responses(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE responses (
        request_hash TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)""")


# Schema changes are appended here, never edited: each runs once and is recorded in _migrations.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [("m001_responses", _m001_responses)]


CacheMode = Literal["shared", "exclusive", "snapshot"]


class RequestCache:
    """request hash → completion, in one sqlite file (WAL, so readers never block the writer).

    `mode` says who else may use the file: `shared` (processes of this machine, the default), `exclusive`
    (this process alone: no shared-memory index, so it is safe on a network file system), or `snapshot`
    (read-only, assuming nobody writes during the run: no locks at all, so any machine may read it).
    A miss is looked up in `fallback`, if given, before it counts as a miss.

    A cache that was empty when opened remembers the keys it was given (up to `remembered_keys`), so a
    fresh run's lookups, nearly all misses, need no query; an entry another process adds meanwhile is then
    not found, which costs that request once more, never a wrong answer.
    """

    remembered_keys = 1_000_000

    def __init__(self, path: str | Path, mode: CacheMode = "shared", fallback: RequestCache | None = None) -> None:
        self.path = Path(path)
        self.fallback = fallback
        self.hits = 0
        self._only_mine = None
        self._unwritten: dict[str, tuple] = {}
        self._flushed = time.monotonic()
        self._failure: OutputError | None = None
        try:
            if mode == "snapshot":
                self.db = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?immutable=1", uri=True,
                                          isolation_level=None)
                self.db.execute("SELECT 1 FROM responses LIMIT 1")
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None)
            if mode == "exclusive":  # set before WAL starts, so WAL keeps its index in heap memory
                self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a usable cache file ({exc})") from None
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        empty = self.db.execute("SELECT 1 FROM responses LIMIT 1").fetchone() is None
        self._only_mine: set[str] | None = set() if empty else None  # every entry, when all came through put

    batch_size = 256  # a put writes once this many wait, or once the oldest has waited flush_seconds
    flush_seconds = 0.5

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
        row = self._unwritten.get(key)
        if row is not None:
            self.hits += 1
            return Completion(row[2], row[3], Usage(row[4], row[5]))
        if self._only_mine is not None and key not in self._only_mine:
            row = None
        else:
            row = self.db.execute("SELECT text, finish_reason, prompt_tokens, completion_tokens FROM responses "
                                  "WHERE request_hash = ?", (key,)).fetchone()
        if row is None:
            found = self.fallback.get(key) if self.fallback is not None else None
            self.hits += found is not None
            return found
        self.hits += 1
        return Completion(row[0], row[1], Usage(row[2], row[3]))

    def put(self, key: str, model: str, completion: Completion) -> None:
        """Store (or replace) a completion.

        Inside an event loop, the puts of one loop iteration are written together in one transaction at its
        end (so a crash loses at most the answers of that instant); elsewhere every `batch_size` entries or
        `flush_seconds`, whichever comes first, and always on `flush` and `close`. A write that failed at the
        end of an iteration (a full disk) is raised by the next put, in the unit that makes it.
        """
        if self._failure is not None:
            raise self._failure
        if not self._unwritten:
            self._flushed = time.monotonic()
            try:
                asyncio.get_running_loop().call_soon(self._flush_later)
            except RuntimeError:
                pass  # no loop: the size and age rules below apply
        if self._only_mine is not None:
            self._only_mine.add(key)
            if len(self._only_mine) > self.remembered_keys:
                self._only_mine = None
        self._unwritten[key] = (key, model, completion.text, completion.finish_reason,
                                completion.usage.prompt_tokens, completion.usage.completion_tokens, time.time())
        if len(self._unwritten) >= self.batch_size or time.monotonic() - self._flushed >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the completions put since the last flush, in one transaction.

        A cache that cannot be written (a full disk, a lock held too long) is a one-line error.
        """
        if self._unwritten and self.db is not None:
            try:
                self.db.execute("BEGIN")
                try:
                    self.db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                                        list(self._unwritten.values()))
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise OutputError(f"cache: cannot write {self.path} ({exc})") from None
            self._unwritten.clear()

    def _flush_later(self) -> None:
        """The end-of-iteration flush, run by the event loop, which would only log an error: keep it for `put`."""
        try:
            self.flush()
        except OutputError as exc:
            self._failure = exc

    def __len__(self) -> int:
        self.flush()
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def keys(self) -> Iterator[str]:
        """Every cached request hash."""
        self.flush()
        return (row[0] for row in self.db.execute("SELECT request_hash FROM responses"))

    def stats(self) -> list[dict[str, Any]]:
        """Entries and token totals per model."""
        self.flush()
        rows = self.db.execute("SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM responses "
                               "GROUP BY model ORDER BY model").fetchall()
        return [{"model": m, "entries": n, "prompt_tokens": p or 0, "completion_tokens": c or 0} for m, n, p, c in rows]

    def clear(self, model: str | None = None) -> int:
        """Delete every entry (or one model's); return how many went."""
        self.flush()
        where, args = ("WHERE model = ?", (model,)) if model else ("", ())
        with self.db:
            count = self.db.execute(f"DELETE FROM responses {where}", args).rowcount
        self.db.execute("VACUUM")
        return count

    def export(self, path: Path) -> int:
        """Write every entry as JSONL (request_hash, model, text, finish_reason, usage); return the count."""
        self.flush()
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

    def merge(self, other: Path) -> int:
        """Copy the entries of another cache file that this one lacks; return how many were added."""
        self.flush()
        self.db.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            with self.db:
                added = self.db.execute(f"INSERT OR IGNORE INTO responses ({_COLUMNS}) "
                                        f"SELECT {_COLUMNS} FROM other.responses").rowcount
            if added:
                self._only_mine = None  # entries that did not come through put
            return added
        finally:
            self.db.execute("DETACH DATABASE other")

    def checkpoint(self) -> None:
        """Move the write-ahead log into the database file, so snapshot readers (which skip the log) see it all."""
        self.flush()
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Write what is unwritten, then close the database (and its fallback)."""
        self.flush()
        self.db.close()
        self.db = None  # type: ignore[assignment]
        if self.fallback is not None:
            self.fallback.close()


_COLUMNS = "request_hash, model, text, finish_reason, prompt_tokens, completion_tokens, created"


def worker_cache_dir(main: Path) -> Path:
    """Where the worker caches of a main cache file live: `<main>.workers/` beside it."""
    return main.with_name(main.name + ".workers")


def merge_worker_caches(main: RequestCache, wait_seconds: float = 1.0) -> int:
    """Merge every worker cache beside `main` into it and delete it; return the entries added.

    A worker holds its cache locked while it runs; one still locked after `wait_seconds` (a worker of
    another run sharing this cache, or one still shutting down) is left for a later merge.
    """
    folder = worker_cache_dir(main.path)
    added = 0
    main.db.execute(f"PRAGMA busy_timeout = {int(wait_seconds * 1000)}")
    for path in sorted(folder.glob("worker-*.sqlite")):
        try:
            added += main.merge(path)
        except sqlite3.OperationalError:
            continue  # locked: its worker is still running
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return added
