"""Live progress of a run on stderr, and the summary table printed when it ends."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from lcsynth.config import PriceSpec
from lcsynth.counters import RunCounters, cost_of


class RunProgress:
    """A rich display refreshed as units commit: a bar when the number of units is known, else a counter."""

    def __init__(self, counters: RunCounters, stats: dict[str, int], enabled: bool = True,
                 total_units: int | None = None, price: PriceSpec | None = None) -> None:
        self.counters, self.stats, self.price = counters, stats, price
        self.started = time.monotonic()
        self._progress = Progress(
            SpinnerColumn(), BarColumn(bar_width=24), TextColumn("{task.completed}/{task.total} units"),
            TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not enabled, transient=False,
        )
        self._task = self._progress.add_task("starting", total=total_units)
        self._drawn = 0.0
        self._last: tuple[Any, int] | None = None

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._last is not None:
            self._draw(*self._last)
        self._progress.stop()

    def update(self, writer: Any, units: int) -> None:
        """Redraw from the writer's counts and the live counters, at most ten times a second."""
        self._last = (writer, units)
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(writer, units)

    def _draw(self, writer: Any, units: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rows = sum(writer.rows.values())
        top = ", ".join(f"{reason} {n}" for reason, n in writer.rejects.most_common(2))
        spent = cost_of(self.counters, self.price)
        rate_in, rate_out = self.counters.prompt_tokens / elapsed, self.counters.completion_tokens / elapsed
        description = (
            f"docs {self.stats['documents_read']} · rows {rows} · rejects {sum(writer.rejects.values())}"
            f"{f' ({top})' if top else ''} · in flight {self.counters.in_flight} · "
            f"in {rate_in:.0f} / out {rate_out:.0f} tok/s{f' · ${spent:.4f}' if spent is not None else ''}"
        )
        self._progress.update(self._task, completed=units, description=description)


def summary_table(manifest: dict[str, Any], timings: dict[str, Any]) -> Table:
    """What a finished run produced, as a small table."""
    counts, tokens = manifest["counts"], manifest["tokens"]
    table = Table(title="run summary", show_header=False, title_justify="left")
    for kind, n in counts["rows"].items():
        table.add_row(f"{kind} rows", str(n))
    for reason, n in counts["rejects"].items():
        table.add_row(f"reject: {reason}", str(n))
    table.add_row("documents read", str(counts["documents_read"]))
    table.add_row("requests (cache hits)", f"{tokens['requests']} ({timings['cache_hits']})")
    table.add_row("tokens in / out", f"{tokens['prompt']} / {tokens['completion']}")
    table.add_row("generation time", f"{timings['generation_seconds']:.1f} s")
    if manifest.get("cost") is not None:
        table.add_row("estimated cost", f"${manifest['cost']:.4f}")
    return table
