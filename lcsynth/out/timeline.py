"""The run's throughput over time: a sample of the live counters every few seconds, in `timeline.csv`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lcsynth.counters import RunCounters

TIMELINE = "timeline.csv"
FIELDS = ("time", "session", "requests", "cache_hits", "prompt_tokens", "completion_tokens", "rows", "rejects")


class Timeline:
    """Appends a line at most every `every` seconds: wall time, requests, tokens, rows and rejects so far.

    Counters restart at zero in each process (a resumed run is a new `session`), so rates are taken
    between samples of the same session.
    """

    every = 1.0

    def __init__(self, run_dir: Path, counters: RunCounters) -> None:
        self.path = run_dir / TIMELINE
        self.counters = counters
        previous = read_timeline(run_dir)
        self.session = previous[-1]["session"] + 1 if previous else 0
        self._last = 0.0

    def sample(self, rows: int, rejects: int, force: bool = False) -> None:
        """Write a sample if `every` seconds have passed since the last one (or `force`)."""
        now = time.time()
        if not force and now - self._last < self.every:
            return
        self._last = now
        values = (f"{now:.3f}", self.session, self.counters.requests, self.counters.cache_hits,
                  self.counters.prompt_tokens, self.counters.completion_tokens, rows, rejects)
        new = not self.path.exists()
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write((",".join(FIELDS) + "\n" if new else "") + ",".join(map(str, values)) + "\n")


def read_timeline(run_dir: Path) -> list[dict[str, Any]]:
    """Every sample of a run (empty when it has none); a torn last line from a kill is skipped."""
    path = run_dir / TIMELINE
    if not path.exists():
        return []
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        values = line.split(",")
        if len(values) == len(FIELDS) and all(values):
            time_value, *counts = values
            samples.append({"time": float(time_value), **dict(zip(FIELDS[1:], map(int, counts), strict=True))})
    return samples


def rates(samples: list[dict[str, Any]], field: str) -> list[tuple[float, float]]:
    """(seconds since the first sample, `field` per second) between consecutive samples of one session.

    >>> rates([{"time": 0, "session": 0, "n": 0}, {"time": 2, "session": 0, "n": 10},
    ...        {"time": 5, "session": 1, "n": 3}, {"time": 6, "session": 1, "n": 9}], "n")
    [(2.0, 5.0), (6.0, 6.0)]
    """
    points = []
    for before, after in zip(samples, samples[1:], strict=False):
        span = after["time"] - before["time"]
        if after["session"] == before["session"] and span > 0:
            points.append((float(after["time"] - samples[0]["time"]), (after[field] - before[field]) / span))
    return points
