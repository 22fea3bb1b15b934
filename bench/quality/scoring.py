"""Scoring probe answers by code, and 95% intervals of mean scores.

Two scorers, both strict about hedging:
- `one_of`: 1 when an accepted answer appears in the output (whole words, case ignored) and no other
  candidate of the item does (answering with every number of the context earns nothing).
- `set`: the share of gold answers found, divided by the larger of the gold count and the number of
  candidates named (listing every candidate earns gold/candidates, not 1).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any


def mentions(output: str, answer: str) -> bool:
    """Whether `answer` appears in `output` as whole words, ignoring case and runs of whitespace.

    >>> mentions("It is 4821.", "4821"), mentions("48210", "4821"), mentions("cobalt  Lantern", "cobalt lantern")
    (True, False, True)
    """
    words = r"\s+".join(re.escape(part) for part in answer.split())
    return re.search(rf"(?<![\w]){words}(?![\w])", output, flags=re.IGNORECASE) is not None


def score(item: dict[str, Any], output: str) -> float:
    """The item's score in [0, 1] for a model's `output`."""
    output = output[:2000]  # an answer longer than this is not an answer
    gold = item["answers"]
    named = {c for c in item.get("candidates", gold) if mentions(output, c)}
    if item["scorer"] == "one_of":
        hit = any(mentions(output, g) for g in gold)
        return 1.0 if hit and not (named - set(gold)) else 0.0
    if item["scorer"] == "set":
        found = sum(1 for g in set(gold) if mentions(output, g))
        return found / max(len(set(gold)), len(named))
    raise ValueError(f"unknown scorer {item['scorer']!r}")


def interval(scores: Sequence[float]) -> tuple[float, float, float]:
    """Mean and normal-approximation 95% interval of scores in [0, 1], in points (0-100), clipped.

    >>> interval([1.0, 0.0, 1.0, 0.0])
    (50.0, 1.0, 99.0)
    """
    n = len(scores)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = sum(scores) / n
    var = sum((s - mean) ** 2 for s in scores) / max(1, n - 1)
    half = 1.96 * math.sqrt(var / n)
    return (round(100 * mean, 1), round(100 * max(0.0, mean - half), 1), round(100 * min(1.0, mean + half), 1))


def cell(item: dict[str, Any]) -> str:
    """The table cell an item belongs to: `task@length`, `task@short`, or `instructions`."""
    if item["task"].startswith("instruction_"):
        return "instructions"
    if item["id"].startswith("short-"):
        return f"{item['task']}@short"
    return f"{item['task']}@{item['length']}"


def summarise(items: Iterable[dict[str, Any]], outputs: dict[str, str]) -> dict[str, Any]:
    """Per-cell and per-length means with 95% intervals, and the averages the targets are stated in."""
    per_cell: dict[str, list[float]] = defaultdict(list)
    per_length: dict[str, list[float]] = defaultdict(list)
    short: list[float] = []
    for it in items:
        s = score(it, outputs.get(it["id"], ""))
        name = cell(it)
        per_cell[name].append(s)
        if "@" in name and not name.endswith("@short"):
            per_length[str(it["length"])].append(s)
        else:
            short.append(s)
    cells = {name: dict(zip(("mean", "low", "high"), interval(v), strict=True), n=len(v))
             for name, v in sorted(per_cell.items())}

    def task_average(lengths: Sequence[str]) -> float:
        """Mean over tasks of each task's mean over `lengths` (every task weighs the same)."""
        tasks = {n.split("@")[0] for n in cells if "@" in n}
        means = [cells[f"{t}@{n}"]["mean"] for t in tasks for n in lengths if f"{t}@{n}" in cells]
        return round(sum(means) / len(means), 1) if means else math.nan

    lengths = sorted(per_length, key=int)
    return {
        "cells": cells,
        "by_length": {n: dict(zip(("mean", "low", "high"), interval(per_length[n]), strict=False)) for n in lengths},
        "avg_4k_8k": task_average([n for n in lengths if 4000 <= int(n) <= 8192]),
        "avg_16k": task_average([n for n in lengths if int(n) >= 16000]),
        "avg_all_long": task_average(lengths),
        "short": dict(zip(("mean", "low", "high"), interval(short), strict=False)),
    }
