"""The results table of `quality.json`: one line per model, scores in points with 95% intervals."""

from __future__ import annotations

from typing import Any

ORDER = ("untuned", "naive_sft", "lcsynth_sft", "gain_off", "keychain_only", "longmagpie_only", "naive_ext",
         "lcsynth_ext")


def _cell(entry: dict[str, Any] | None) -> str:
    """'mean [low, high]' or a dash."""
    if not entry:
        return "-"
    return f"{entry['mean']:.1f} [{entry['low']:.1f}, {entry['high']:.1f}]"


def results_table(result: dict[str, Any]) -> str:
    """A Markdown table: each model's mean per length, the 4K-8K and 16K task averages, and the short set."""
    models = result["models"]
    names = [n for n in ORDER if n in models] + sorted(set(models) - set(ORDER))
    lengths = sorted({n for m in models.values() for n in (m["scores"] or {}).get("by_length", {})}, key=int)
    head = ["model", *[f"{int(n) // 1000}K" for n in lengths], "avg 4K-8K", "avg 16K", "short set"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        scores = models[name]["scores"] or {}
        by_length = scores.get("by_length", {})
        row = [name, *[_cell(by_length.get(n)) for n in lengths], f"{scores.get('avg_4k_8k', float('nan')):.1f}",
               f"{scores.get('avg_16k', float('nan')):.1f}", _cell(scores.get("short"))]
        lines.append("| " + " | ".join(row) + " |")
    tasks = sorted({c.split("@")[0] for m in models.values() for c in (m["scores"] or {}).get("cells", {})})
    lines += ["", "Per task, mean over 2K-8K (instructions: the short prompts)", "",
              "| model | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for name in names:
        cells = (models[name]["scores"] or {}).get("cells", {})
        means = []
        for task in tasks:
            vals = [v["mean"] for k, v in cells.items() if k.split("@")[0] == task and _in_window(k)]
            means.append(f"{sum(vals) / len(vals):.1f}" if vals else "-")
        lines.append(f"| {name} | " + " | ".join(means) + " |")
    return "\n".join(lines)


def _in_window(cell: str) -> bool:
    """Whether a cell counts in the per-task table: 2K to 8K, or the short instructions."""
    _, _, length = cell.partition("@")
    return cell == "instructions" or (length.isdigit() and int(length) < 16000)
