"""The run report: histograms of tokens per row and reject reasons, written with the run and on demand."""

import asyncio
import re
import subprocess
import sys

from test_pipeline import corpus, numbered_reply, read, recipe

from lcsynth.run.local import run_recipe


def test_a_finished_run_has_a_report_with_length_histogram_and_reject_reasons(tmp_path, scripted):
    texts = [f"The doc says item{i}. " * (10 + 5 * i) for i in range(6)] + ["The doc says bad. " * 20]
    summary = asyncio.run(run_recipe(recipe(corpus(tmp_path, texts)), scripted(numbered_reply), show_progress=False))
    report = (summary.run_dir / "report.html").read_text()
    svg = (summary.run_dir / "sft_lengths.svg").read_text()
    rows = read(summary.run_dir / "sft-00000.jsonl")
    assert svg.startswith("<svg") and svg in report
    assert f"sft: tokens per row ({len(rows)} rows" in svg
    bar_counts = [int(n) for n in re.findall(r"</title></rect><text [^>]*text-anchor=\"middle\">(\d+)</text>", svg)]
    assert sum(bar_counts) == len(rows) == 12
    assert "rejects by reason" in report and "<li>no_question: 2</li>" in report

    (summary.run_dir / "report.html").unlink()
    again = subprocess.run([sys.executable, "-m", "lcsynth.cli", "report", str(summary.run_dir)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and (summary.run_dir / "report.html").read_text() == report
    missing = subprocess.run([sys.executable, "-m", "lcsynth.cli", "report", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no readable manifest.json" in missing.stderr


def test_throughput_over_time_is_sampled_during_the_run_and_plotted(tmp_path, scripted, monkeypatch):
    from lcsynth.out.timeline import Timeline, read_timeline
    from lcsynth.run.runner import UnitRunner

    monkeypatch.setattr(UnitRunner, "checkpoint_seconds", 0.0)
    monkeypatch.setattr(Timeline, "every", 0.0)
    texts = [f"The doc says item{i}. " * 20 for i in range(8)]
    summary = asyncio.run(run_recipe(recipe(corpus(tmp_path, texts)), scripted(numbered_reply, jitter=0.02),
                                     show_progress=False))
    samples = read_timeline(summary.run_dir)
    assert len(samples) >= 3 and {s["session"] for s in samples} == {0}
    assert [s["rows"] for s in samples] == sorted(s["rows"] for s in samples)  # rows only accumulate
    assert samples[-1]["rows"] == 16 and samples[-1]["requests"] == 32
    assert samples[-1]["completion_tokens"] == summary.manifest["tokens"]["completion"]
    report = (summary.run_dir / "report.html").read_text()
    chart = (summary.run_dir / "throughput.svg").read_text()
    assert chart in report and "tokens out per second (peak" in chart and "<polyline" in chart
    assert "rows written per second" in report
