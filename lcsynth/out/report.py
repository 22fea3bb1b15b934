"""The run report: `report.html` with token-length histograms per kind, reject reasons, throughput (inline SVG)."""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from pathlib import Path

from lcsynth.errors import InputError
from lcsynth.out.rows import read_jsonl, row_tokens
from lcsynth.out.timeline import rates, read_timeline

BINS = 20


def depth_section(kind: str, depths: list[float], run_dir: Path) -> list[str]:
    """A histogram of where evidence sits in the context (meta.evidence_depths), in tenths; empty if none."""
    if not depths:
        return []
    counts = Counter(min(int(d * 10), 9) for d in depths)
    svg = svg_bars(f"{kind}: evidence depth ({len(depths)} spans; 0 = start of context)",
                   [f"{i / 10:.1f}" for i in range(10)], [counts.get(i, 0) for i in range(10)], "depth")
    (run_dir / f"{kind}_depths.svg").write_text(svg, encoding="utf-8")
    return [svg]


def length_summary(values: list[int]) -> dict[str, int]:
    """Rows counted and the min, median, 90th percentile and max of their lengths (nearest rank).

    >>> length_summary([5, 1, 4, 2, 3])
    {'rows': 5, 'min': 1, 'median': 3, 'p90': 5, 'max': 5}
    """
    ordered = sorted(values)

    def rank(q: float) -> int:
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]

    return {"rows": len(ordered), "min": ordered[0], "median": rank(0.5), "p90": rank(0.9), "max": ordered[-1]}


def histogram(values: list[int], bins: int = BINS) -> list[tuple[int, int, int]]:
    """(low, high, count) for equal-width bins over the values.

    >>> histogram([1, 2, 3, 10], bins=3)
    [(1, 4, 3), (4, 7, 0), (7, 10, 1)]
    """
    low, high = min(values), max(values)
    width = max((high - low + bins - 1) // bins, 1)
    counts = Counter(min((v - low) // width, bins - 1) for v in values)
    return [(low + i * width, low + (i + 1) * width, counts.get(i, 0)) for i in range(bins)]


def svg_bars(title: str, labels: list[str], counts: list[int], x_label: str) -> str:
    """A small vertical bar chart as standalone SVG."""
    width, height, pad = 640, 260, 40
    top = max(counts) or 1
    bar = (width - 2 * pad) / max(len(counts), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{pad}" y="18" font-size="14">{html.escape(title)}</text>']
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        h = (height - 2 * pad - 10) * count / top
        x, y = pad + i * bar, height - pad - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" fill="#4c78a8">'
                     f'<title>{html.escape(label)}: {count}</title></rect>')
        if count:
            parts.append(f'<text x="{x + bar * 0.45:.1f}" y="{y - 3:.1f}" text-anchor="middle">{count}</text>')
    for i in (0, len(labels) - 1):
        parts.append(f'<text x="{pad + i * bar:.1f}" y="{height - pad + 14}">{html.escape(labels[i])}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text></svg>')
    return "".join(parts)


def svg_line(title: str, points: list[tuple[float, float]], x_label: str) -> str:
    """A small line chart (one series, axes from zero) as standalone SVG."""
    width, height, pad = 640, 260, 40
    right = max((x for x, _ in points), default=1.0) or 1.0
    top = max((y for _, y in points), default=1.0) or 1.0
    path = " ".join(f"{pad + (width - 2 * pad) * x / right:.1f},{height - pad - (height - 2 * pad - 10) * y / top:.1f}"
                    for x, y in points)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
            f'font-size="11"><rect width="100%" height="100%" fill="white"/>'
            f'<text x="{pad}" y="18" font-size="14">{html.escape(title)}</text>'
            f'<polyline fill="none" stroke="#4c78a8" stroke-width="1.5" points="{path}"/>'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
            f'<text x="{pad}" y="{height - pad + 14}">0</text>'
            f'<text x="{width - pad}" y="{height - pad + 14}" text-anchor="end">{right:.0f}</text>'
            f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{top:.0f}</text>'
            f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">{html.escape(x_label)}</text></svg>')


def throughput_section(run_dir: Path) -> list[str]:
    """Charts of tokens written and rows committed per second over the run, from `timeline.jsonl`."""
    samples = read_timeline(run_dir)
    charts = []
    for field, what in (("completion_tokens", "tokens out per second"), ("rows", "rows written per second")):
        points = rates(samples, field)
        if points:
            peak = max(y for _, y in points)
            charts.append(svg_line(f"{what} (peak {peak:.1f})", points, "seconds since the run started"))
    if charts:
        (run_dir / "throughput.svg").write_text(charts[0], encoding="utf-8")
    return charts


def length_svg(kind: str, lengths: list[int]) -> str:
    """The histogram of a kind's tokens per row, as `<kind>_lengths.svg` holds it."""
    bins = histogram(lengths)
    return svg_bars(f"{kind}: tokens per row ({len(lengths)} rows, {min(lengths)}–{max(lengths)})",
                    [f"{lo}" for lo, _, _ in bins], [c for _, _, c in bins], "tokens (prompt read + text written)")


def kind_measures(run_dir: Path, kind: str) -> tuple[int, list[int], list[float]]:
    """Rows of a kind, the token counts they record and their evidence depths, read one row at a time."""
    rows, lengths, depths = 0, [], []
    for shard in sorted(run_dir.glob(f"{kind}-*.jsonl")):
        for row in read_jsonl(shard):
            meta = row.get("meta", {})
            rows += 1
            depths.extend(meta.get("evidence_depths", []))
            tokens = row_tokens(meta)
            if tokens is not None:
                lengths.append(tokens)
    return rows, lengths, depths


def write_report(run_dir: Path) -> Path:
    """Write `report.html` and one `<kind>_lengths.svg` per row kind; return the report's path."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{run_dir}: no readable manifest.json (is this a finished run?)") from None
    sections = [f"<h1>lcsynth run {html.escape(run_dir.name)}</h1>",
                f"<p>model {html.escape(manifest['model'])} · seed {manifest['seed']}</p>"]
    for kind in manifest["counts"]["rows"]:
        rows, lengths, depths = kind_measures(run_dir, kind)
        sections.extend(depth_section(kind, depths, run_dir))
        if not lengths:
            sections.append(f"<p>{kind}: {rows} rows, no token counts in their meta</p>")
            continue
        svg = length_svg(kind, lengths)
        (run_dir / f"{kind}_lengths.svg").write_text(svg, encoding="utf-8")
        sections.append(svg)
    rejects = manifest["counts"]["rejects"]
    if rejects:
        reasons = sorted(rejects, key=lambda r: -rejects[r])
        sections.append(svg_bars("rejects by reason", reasons, [rejects[r] for r in reasons], "reason"))
        sections.append("<ul>" + "".join(f"<li>{html.escape(r)}: {rejects[r]}</li>" for r in reasons) + "</ul>")
    sections.extend(throughput_section(run_dir))
    tokens = manifest["tokens"]
    sections.append(f"<p>requests {tokens['requests']} · tokens in {tokens['prompt']} · out {tokens['completion']}</p>")
    path = run_dir / "report.html"
    path.write_text("<!doctype html><meta charset='utf-8'><title>lcsynth report</title>\n" + "\n".join(sections),
                    encoding="utf-8")
    return path
