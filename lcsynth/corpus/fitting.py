"""Where documents are counted and cut: worker processes ahead of the run, in corpus order, or in place.

`Fitter` only schedules; the count and the cut of each text are `text.tokens.fit_tokens`.

Counting a document's tokens is the one per-document cost that grows with the document, and in the event
loop's process it competes with sending requests and writing rows. Once a run has fitted `start_after`
documents itself (a small run never pays for a process), a pool of worker processes, each with its own
copy of the tokenizer, fits batches ahead; the run only reads the results. A batch the pool has not begun
when the run needs it is taken back and fitted in place, so the pool never makes the run wait.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from itertools import islice
from typing import Any, TypeVar

from lcsynth.text.tokens import Tokenizer, fit_tokens

log = logging.getLogger(__name__)
T = TypeVar("T")
Fitted = tuple[str, int, int]  # (text, kept tokens, original tokens), as `fit_tokens` returns

_TOKENIZER: Tokenizer | None = None  # the worker process's own copy


def _start_worker(tokenizer: Tokenizer) -> None:
    global _TOKENIZER
    _TOKENIZER = tokenizer
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose run was killed (kill -9 leaves no time to stop it) ends within a second."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _ready() -> bool:
    return _TOKENIZER is not None


def _fit_in_worker(texts: list[str], limit: int, how: str) -> list[tuple[str | None, int, int]]:
    """Fit each text; a text that fits comes back as None (the caller has it)."""
    assert _TOKENIZER is not None
    return [(None, kept, total) if kept == total else (text, kept, total)
            for text, kept, total in (fit_tokens(_TOKENIZER, t, limit, how) for t in texts)]


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Keep a spawned worker from running the caller's script again.

    A spawned process imports the parent's `__main__` (as `__mp_main__`), which runs whatever a script does
    outside an `if __name__ == "__main__":` guard, a run included. The workers need nothing from `__main__`,
    so while they start it has no file or spec to be imported from.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


def default_processes() -> int:
    """One worker where there is a core to spare besides the event loop's, else none."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if cores > 1 else 0


def picklable(tokenizer: Tokenizer) -> bool:
    """Whether a worker process can rebuild `tokenizer` (the built-in ones can; a custom one may not)."""
    try:
        pickle.dumps(tokenizer)
    except Exception:  # noqa: BLE001 - any failure means: fit in this process
        return False
    return True


class Fitter:
    """Fits texts in order: in this process, or through a pool of `processes` workers once started."""

    def __init__(self, tokenizer: Tokenizer, processes: int | None = None, batch: int = 32,
                 start_after: int = 256) -> None:
        self.tokenizer, self.batch, self.start_after = tokenizer, batch, start_after
        wanted = default_processes() if processes is None else processes
        self.processes = wanted if wanted and picklable(tokenizer) else 0
        self._pool: ProcessPoolExecutor | None = None
        self._ready: Future | None = None  # done once a worker has started and loaded the tokenizer
        self.taken_back = 0  # batches the pool had not begun when they were needed
        self.pooled = 0  # batches the pool fitted

    def fit(self, items: Iterator[tuple[T, str | None]], limit: int, how: str) -> Iterator[tuple[T, Fitted | None]]:
        """For each (item, text), the item and its fitted text, in order; a None text passes through as None."""
        window: deque[tuple[list[tuple[T, str | None]], Future | None]] = deque()
        fitted = 0
        try:
            while batch := list(islice(items, self.batch)):
                texts = [text for _, text in batch if text is not None]
                if self._pool is None and self.processes and fitted >= self.start_after:
                    self.start()
                future = self._submit(texts, limit, how) if texts else None
                fitted += len(texts)
                window.append((batch, future))
                if future is None or len(window) > 4 * self.processes:
                    yield from self._results(*window.popleft(), limit, how)
            while window:
                yield from self._results(*window.popleft(), limit, how)
        finally:
            self.close()

    def start(self, wait: bool = False) -> None:
        """Start the workers now (`fit` otherwise does after `start_after` texts); `wait` for one to be up."""
        if self._pool is None and self.processes:
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(self.tokenizer,))
            with _main_script_hidden():  # the workers start here, with the first task
                self._ready = self._pool.submit(_ready)
        if wait and self._ready is not None:
            wait_for([self._ready])

    def _submit(self, texts: list[str], limit: int, how: str) -> Future | None:
        """Hand a batch to the pool if it takes work now; None: fit it here."""
        if not self._started():
            return None
        try:
            return self._pool.submit(_fit_in_worker, texts, limit, how)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a pool that broke since: fit here from now on
            self._give_up(exc)
            return None

    def _started(self) -> bool:
        """Whether the pool takes work now: until a worker is up, the run fits documents itself."""
        if self._ready is None or not self._ready.done():
            return False
        if self._ready.exception() is not None:
            self._give_up(self._ready.exception())
            return False
        return True

    def _give_up(self, exc: BaseException | None) -> None:
        log.warning("token counting workers failed (%s); counting in the run's own process", exc)
        self.close()
        self.processes = 0

    def _results(self, batch: list[tuple[T, str | None]], future: Future | None, limit: int,
                 how: str) -> Iterator[tuple[T, Fitted | None]]:
        texts = [text for _, text in batch if text is not None]
        results: list[Any] | None = None
        if future is not None and (future.done() or not future.cancel()):
            try:
                results = [(text if fit is None else fit, kept, total)
                           for text, (fit, kept, total) in zip(texts, future.result(), strict=True)]
                self.pooled += 1
            except Exception as exc:  # noqa: BLE001 - a worker that died: fit here from now on
                self._give_up(exc)
        elif future is not None:
            self.taken_back += 1
        if results is None:
            results = [fit_tokens(self.tokenizer, text, limit, how) for text in texts]
        done = iter(results)
        for item, text in batch:
            yield item, (next(done) if text is not None else None)

    def close(self) -> None:
        """Stop the workers (batches not begun are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._ready = None
