"""Live progress of a run on stderr: units, rows, rejects, requests in flight, tokens per second."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from lcsynth.methods.base import RunCounters


class RunProgress:
    """A one-line rich display, refreshed as units finish; silent when disabled."""

    def __init__(self, counters: RunCounters, stats: dict[str, int], enabled: bool = True) -> None:
        self.counters, self.stats = counters, stats
        self.started = time.monotonic()
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
            console=Console(stderr=True), disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task("starting", total=None)

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def update(self, writer: Any, units: int) -> None:
        """Redraw from the writer's counts and the backend counters."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rows = sum(writer.rows.values())
        rejects = sum(writer.rejects.values())
        tps = self.counters.completion_tokens / elapsed
        self._progress.update(self._task, description=(
            f"docs {self.stats['documents_read']} · units {units} · rows {rows} · rejects {rejects} · "
            f"in flight {self.counters.in_flight} · {tps:.0f} tok/s"
        ))
