"""Prefetched: an iterator run ahead in a thread keeps order, passes errors on, and stops when closed."""

import threading
import time

import pytest

from lcsynth.prefetch import Prefetched


def test_items_arrive_in_order_from_another_thread():
    threads = set()

    def source():
        for i in range(1000):
            threads.add(threading.current_thread().name)
            yield i

    assert list(Prefetched(source(), depth=7)) == list(range(1000))
    assert threads == {"lcsynth-prefetch"}


def test_an_error_in_the_source_is_raised_where_it_happened():
    def source():
        yield 1
        yield 2
        raise ValueError("line 3 is not JSON")

    items = Prefetched(source(), depth=4)
    assert next(items) == 1 and next(items) == 2
    with pytest.raises(ValueError, match="line 3"):
        next(items)
    with pytest.raises(StopIteration):
        next(items)


def test_close_stops_the_source_early_and_closes_it():
    produced, closed = [], threading.Event()

    def source():
        try:
            for i in range(10**9):
                produced.append(i)
                yield i
        finally:
            closed.set()

    items = Prefetched(source(), depth=5)
    assert next(items) == 0
    time.sleep(0.2)  # let it fill its queue
    items.close()
    assert closed.wait(5)
    assert len(produced) <= 5 + 3  # bounded read-ahead: the queue, the item in hand, the one taken
    with pytest.raises(StopIteration):
        next(items)
