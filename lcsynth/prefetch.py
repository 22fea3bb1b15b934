"""Runs an iterator in a background thread, a bounded number of items ahead of whoever consumes it.

Reading and tokenizing documents is CPU work in C (the tokenizers release the GIL), so doing it ahead in a
thread keeps the event loop free to send requests and handle answers instead of stalling on a long document.
Items keep their order; an exception in the source reaches the consumer at the point it happened.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_ITEM, _END, _ERROR = 0, 1, 2


class Prefetched(Iterator[T], Generic[T]):
    """Iterate `source` in a daemon thread, at most `depth` items ahead; `close()` stops it early."""

    def __init__(self, source: Iterator[T], depth: int = 64, name: str = "lcsynth-prefetch") -> None:
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._fill, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _fill(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put((_ERROR, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple[int, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value  # type: ignore[return-value]
        self._finished = True
        if kind == _ERROR:
            raise value  # type: ignore[misc]
        raise StopIteration

    def close(self) -> None:
        """Stop the thread (it finishes the item in hand) and wait for it."""
        self._finished = True
        self._stop.set()
        self._thread.join(timeout=30)
