"""Python's cyclic garbage collector, run at a run's checkpoints rather than every 700 allocations."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collected_at_checkpoints() -> Iterator[None]:
    """Python's cyclic garbage collection at checkpoints (about once a second) instead of every 700 allocations.

    With hundreds of units in flight the automatic collector runs thousands of times a second and costs
    about a tenth of the run's CPU. What exists when the units start (tokenizer tables, templates, modules) is
    frozen out of the scans; `UnitRunner.checkpoint` collects the rest, so garbage lives about a second.
    A process that has switched collection off itself is left as it is.
    """
    if not gc.isenabled():
        yield
        return
    gc.freeze()
    gc.disable()
    _COLLECTING.append(True)
    try:
        yield
    finally:
        _COLLECTING.pop()
        gc.enable()
        gc.unfreeze()


_COLLECTING: list[bool] = []


def collect_garbage_now() -> None:
    """At a checkpoint: collect, if a runner switched automatic collection off."""
    if _COLLECTING:
        gc.collect()
