"""Progress of a run on stderr (live on a terminal, plain lines in logs), and the summary table at its end."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from lcsynth.config import PriceSpec
from lcsynth.counters import RunCounters, cost_of


def line_interval() -> float:
    """Seconds between plain progress lines: $LCSYNTH_PROGRESS_SECONDS, default 5."""
    try:
        return max(float(os.environ.get("LCSYNTH_PROGRESS_SECONDS", "5")), 0.0)
    except ValueError:
        return 5.0


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS.

    >>> clock(3725.4)
    '1:02:05'
    """
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class RunProgress:
    """Progress on stderr as units commit: a rich display on a terminal, plain lines every few seconds otherwise.

    A log file or a CI console cannot show a live display (it would appear only at the end), so there a
    line with units, rows, rejects by reason, token rates and the time left is printed every
    `line_interval()` seconds by a small thread (so a line comes even while a long unit runs), and once
    more at the end.
    """

    def __init__(self, counters: RunCounters, stats: dict[str, int], enabled: bool = True,
                 total_units: int | None = None, price: PriceSpec | None = None,
                 stream: TextIO | None = None) -> None:
        self.counters, self.stats, self.price, self.total = counters, stats, price, total_units
        self.started = time.monotonic()
        self._stream = stream or sys.stderr
        self._lines = enabled and not self._stream.isatty()
        self._interval = line_interval()
        self._progress = Progress(
            SpinnerColumn(), BarColumn(bar_width=24), TextColumn("{task.completed}/{task.total} units"),
            TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not enabled or self._lines, transient=False,
        )
        self._task = self._progress.add_task("starting", total=total_units)
        self._drawn = 0.0
        self._last: tuple[Any, int] | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> RunProgress:
        self._progress.start()
        if self._lines:
            self._ticker = threading.Thread(target=self._tick, name="lcsynth-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
        if self._last is not None:
            self._draw(*self._last)
            if self._lines:
                self._print_line(*self._last)
        self._progress.stop()

    def update(self, writer: Any, units: int) -> None:
        """Redraw from the writer's counts and the live counters, at most ten times a second."""
        self._last = (writer, units)
        now = time.monotonic()
        if not self._lines and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(writer, units)

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            if self._last is None:
                self._write(f"progress: starting · docs {self.stats['documents_read']} · "
                            f"elapsed {clock(time.monotonic() - self.started)}")
                continue
            try:
                self._print_line(*self._last)
            except RuntimeError:
                continue  # a counter grew while it was read; the next line will do

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def _print_line(self, writer: Any, units: int) -> None:
        """One plain line: units (and share), rows, rejects by reason, token rates, elapsed and ETA."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rejects = sum(writer.rejects.values())
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(list(writer.rejects.items()), key=lambda i: -i[1]))
        if self.total:
            done = f"{units}/{self.total} units ({100 * units / self.total:.0f}%)"
            left = elapsed * (self.total - units) / units if units else None
            eta = f" · ETA {clock(left)}" if left is not None else " · ETA ?"
        else:
            done, eta = f"{units} units", ""
        spent = cost_of(self.counters, self.price)
        line = (f"progress: {done} · rows {sum(writer.rows.values())} · rejects {rejects}"
                f"{f' ({reasons})' if reasons else ''} · docs {self.stats['documents_read']} · "
                f"in {self.counters.prompt_tokens / elapsed:.0f} / out {self.counters.completion_tokens / elapsed:.0f}"
                f" tok/s{f' · ${spent:.4f}' if spent is not None else ''} · elapsed {clock(elapsed)}{eta}")
        self._write(line)

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
