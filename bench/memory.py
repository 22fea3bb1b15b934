"""Benchmark: peak memory of an `lcsynth generate` run over 10 times the corpus, against the same run over it once.

Each run is a real `lcsynth generate` (the CLI's own entry point) in its own process: Untie-the-Knots on the
`none` backend, every document read, the corpus token store built inside the run. Its peak RSS is the
kernel's high-water mark of that process's memory (`VmHWM`, read as it exits; `ru_maxrss` would also count
the copy of this process it was forked from). The 10x corpus is the same documents ten times under new ids,
so the run reads ten times the documents and writes ten times the rows. Ratio = peak RSS at 10x / at 1x.
Target <= 1.2.

Run: python bench/memory.py [--quick] [--length 8k]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lcsynth.corpus.demo import iter_demo_documents


def write_corpus(path: Path, copies: int, documents: int | None) -> Path:
    """The first `documents` demo documents (all by default), repeated `copies` times under new ids, as JSONL."""
    docs = list(iter_demo_documents())[:documents]
    with path.open("w", encoding="utf-8") as handle:
        for copy in range(copies):
            for doc in docs:
                handle.write(json.dumps({"id": f"{doc.id}#{copy}", "text": doc.text}) + "\n")
    return path


def write_recipe(folder: Path, corpus: Path, length: str) -> Path:
    """An Untie-the-Knots recipe over `corpus` with no document limit (JSON is YAML)."""
    recipe = {"seed": 0, "corpus": {"type": "jsonl", "path": str(corpus), "min_chars": 2000},
              "backend": {"type": "none"},
              "methods": [{"name": "untie_knots", "lengths": {"targets": [length]}, "tracing_rows": 1}],
              "output": {"root": str(folder / "out"), "name": "memory"}}
    path = folder / "recipe.yaml"
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


# Runs the CLI as the `lcsynth` command does, then writes its own peak RSS (KiB) to the file named first.
CHILD = """
import atexit, re, runpy, sys
def peak(path=sys.argv[1]):
    status = open("/proc/self/status").read()
    open(path, "w").write(re.search(r"VmHWM:\\s*(\\d+)", status).group(1))
atexit.register(peak)
sys.argv = ["lcsynth", *sys.argv[2:]]
runpy.run_module("lcsynth.cli", run_name="__main__")
"""


def generate(recipe: Path) -> tuple[float, int]:
    """Run `lcsynth generate` in a child process; its wall seconds and peak RSS in KiB."""
    peak = recipe.with_name("peak_kib")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(peak), "generate", str(recipe), "--quiet"],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"lcsynth generate failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started, int(peak.read_text())


def main(argv: list[str] | None = None) -> None:
    """Run at 1x and 10x, print a table and the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="six documents instead of the whole demo corpus")
    parser.add_argument("--length", default="8k", help="target length of each row")
    args = parser.parse_args(argv)
    documents = 6 if args.quick else None
    print(f"{'corpus':<7} {'MB':>6} {'docs read':>9} {'rows':>6} {'seconds':>8} {'peak RSS MiB':>12}")
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for copies in (1, 10):
            folder = Path(tmp, f"x{copies}")
            folder.mkdir()
            corpus = write_corpus(folder / "corpus.jsonl", copies, documents)
            seconds, peaks[copies] = generate(write_recipe(folder, corpus, args.length))
            manifest = json.loads((folder / "out" / "memory" / "manifest.json").read_text(encoding="utf-8"))
            rows = sum(manifest["counts"]["rows"].values())
            print(f"{f'x{copies}':<7} {corpus.stat().st_size / 1e6:>6.1f} {manifest['counts']['documents_read']:>9} "
                  f"{rows:>6} {seconds:>8.1f} {peaks[copies] / 1024:>12.1f}")
    print(f"summary: lcsynth generate peak RSS 10x / 1x corpus ratio {peaks[10] / peaks[1]:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
