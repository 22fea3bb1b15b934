"""Benchmark: rows/s of the Ray executor against the local executor, on this machine, for a construction method.

Both executors run the same Untie-the-Knots recipe (`none` backend: no model, CPU only) over the demo corpus
written to JSONL; the corpus token store is built before anything is timed. Ray runs use a local Ray
instance with every core, started once and warmed by one small run (neither is counted); each timed run
starts its own pool of replicas, which is counted. Every run must write the local run's bytes.

Each executor makes N and then 2N rows: the wall time of the 2N run gives rows/s as a user sees them, the
difference between the two gives the steady rate (rows/s once replicas run) and the fixed cost of a run
(planning, starting replicas, finishing). The last line sums it up as Ray over local, per replica count.

Run: .venv/bin/python bench/ray_executor.py [--quick] [--samples N] [--length 128k] [--replicas 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lcsynth.config import validate_recipe
from lcsynth.corpus.demo import write_demo_corpus
from lcsynth.run.local import RunSummary, run_recipe


def recipe(root: Path, name: str, length: str, samples: int, documents: int):
    """Untie-the-Knots pretraining rows (no tracing rows) from `documents` documents, `samples` rows in all."""
    per_document = -(-samples // documents)
    method = {"name": "untie_knots", "lengths": {"targets": [length]}, "tracing_rows": 0,
              "samples_per_document": per_document}
    return validate_recipe({"corpus": {"type": "jsonl", "path": str(root / "demo.jsonl"), "min_chars": 2000},
                            "backend": {"type": "none"}, "methods": [method],
                            "output": {"root": str(root), "name": name}, "cache": {"enabled": False},
                            "limits": {"max_documents": documents, "max_records": samples}}, "bench")


def timed(run) -> tuple[RunSummary, float]:
    """A run's summary and its wall time in seconds."""
    started = time.perf_counter()
    summary = run()
    return summary, time.perf_counter() - started


def file_hashes(summary: RunSummary) -> dict[str, str]:
    """sha256 of every output file, as the manifest records them."""
    return file_hashes_of(summary.run_dir)


def file_hashes_of(run_dir: Path) -> dict[str, str]:
    """sha256 of every output file of a finished run."""
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


@dataclass
class Rates:
    """rows/s of a 2N-row run, the steady rows/s between the N and 2N runs, and the fixed seconds per run."""

    rows_per_second: float
    steady: float
    fixed: float

    @classmethod
    def of(cls, rows: int, small: float, large: float) -> Rates:
        """From the wall times of runs of `rows` and 2 x `rows` rows (no steady rate when noise hides it: nan)."""
        if large <= small:
            return cls(2 * rows / large, math.nan, math.nan)
        steady = rows / (large - small)
        return cls(2 * rows / large, steady, max(small - rows / steady, 0.0))


def measure(run, root: Path, name: str, args: argparse.Namespace, expected: dict[str, str] | None) -> Rates:
    """Time `run(spec)` for N and 2N rows; check the 2N run's files against `expected` when given."""
    walls = []
    for samples in (args.samples, 2 * args.samples):
        spec = recipe(root, f"{name}-{samples}", args.length, samples, args.documents)
        summary, wall = timed(lambda spec=spec: run(spec))
        assert sum(summary.rows.values()) == samples, f"{name}: {summary.rows} (raise --documents)"
        walls.append(wall)
    if expected is not None:
        assert file_hashes(summary) == expected, f"{name} wrote other rows than the local executor"
    return Rates.of(args.samples, *walls)


def main(argv: list[str] | None = None) -> None:
    """Time the local executor, then the Ray executor with each number of replicas."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 and 32 rows of 8k tokens (about a minute)")
    parser.add_argument("--samples", type=int, default=48, help="N: runs make N, then 2N rows")
    parser.add_argument("--length", default="128k")
    parser.add_argument("--documents", type=int, default=48)
    parser.add_argument("--replicas", type=int, nargs="+", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.length, args.documents = 16, "8k", 16
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    replicas = args.replicas or sorted({1, cores})

    import ray

    from lcsynth.run.ray_executor import RayOptions, run_recipe_on_ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_demo_corpus(root)
        asyncio.run(run_recipe(recipe(root, "warm", args.length, 2, 2), show_progress=False))  # builds the store
        local = measure(lambda spec: asyncio.run(run_recipe(spec, show_progress=False)), root, "local", args, None)
        expected = file_hashes_of(root / f"local-{2 * args.samples}")
        print(f"{cores} cores; runs of {args.samples} and {2 * args.samples} rows of {args.length} tokens "
              "(untie_knots, backend none)")
        print(f"{'executor':<10} {'rows/s':>7} {'steady rows/s':>14} {'fixed s':>8} {'ratio':>6} {'steady ratio':>13}")
        print(f"{'local':<10} {local.rows_per_second:>7.2f} {local.steady:>14.2f} {local.fixed:>8.2f} {1:>6.2f} "
              f"{1:>13.2f}")
        started = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
        run_recipe_on_ray(recipe(root, "ray-warm", args.length, 2, 2), show_progress=False)
        print(f"(Ray instance started and warmed in {time.perf_counter() - started:.1f} s, not counted)")
        summary = []
        try:
            for count in replicas:
                options = RayOptions(num_replicas=count)
                rates = measure(lambda spec, options=options: run_recipe_on_ray(spec, options, show_progress=False),
                                root, f"ray{count}", args, expected)
                ratio, steady = rates.rows_per_second / local.rows_per_second, rates.steady / local.steady
                summary.append(f"x{count} {ratio:.2f} (steady {steady:.2f})")
                print(f"{f'ray x{count}':<10} {rates.rows_per_second:>7.2f} {rates.steady:>14.2f} "
                      f"{rates.fixed:>8.2f} {ratio:>6.2f} {steady:>13.2f}")
        finally:
            ray.shutdown()
    first = summary[0].split()[1] if summary else "n/a"
    print(f"summary: ray/local rows/s ratio {first} with one replica; {2 * args.samples} rows of {args.length} "
          f"on {cores} cores, by replicas: " + ", ".join(summary))


if __name__ == "__main__":
    main()
