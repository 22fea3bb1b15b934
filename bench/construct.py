"""Benchmark: long-sample construction speed and memory, as ratios against baselines measured in the same run.

- speed: tokens/s of building samples (KeyChain, Untie-the-Knots, NExtLong; corpus store already built)
  divided by tokens/s of tokenizing the produced text once with the same tokenizer. Target >= 0.8.
- memory: peak RSS of a run over the corpus repeated 10 times, divided by the same run over it once.
  Target <= 1.2.

Run: .venv/bin/python bench/construct.py [--length 32k] [--samples 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lcsynth.config import validate_recipe
from lcsynth.demo_corpus import iter_demo_documents
from lcsynth.pipeline import run_recipe

METHODS = {
    "keychain": {"name": "keychain", "qa": "demo"},
    "untie_knots": {"name": "untie_knots", "tracing_rows": 0},
    "nextlong": {"name": "nextlong"},
}


def write_corpus(path: Path, copies: int) -> Path:
    """The demo corpus, repeated `copies` times under new ids, as JSONL."""
    with path.open("w", encoding="utf-8") as handle:
        for copy in range(copies):
            for doc in iter_demo_documents():
                handle.write(json.dumps({"id": f"{doc.id}#{copy}", "text": doc.text}) + "\n")
    return path


def recipe(corpus: Path, root: Path, method: dict, length: str, samples: int, name: str):
    """A construction recipe on the `none` backend."""
    params = {**method, "lengths": {"targets": [length]}}
    if method["name"] == "keychain":
        params["max_items"] = samples
    return validate_recipe({"corpus": {"type": "jsonl", "path": str(corpus), "min_chars": 2000},
                            "backend": {"type": "none"}, "methods": [params],
                            "output": {"root": str(root), "name": name, "overwrite": True},
                            "limits": {"max_documents": samples}}, "bench")


def produced_texts(run_dir: Path) -> list[str]:
    """The text of every row a run wrote (the prompt for GRPO rows)."""
    texts = []
    for path in sorted(run_dir.glob("*-0*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.append(row.get("text") or "\n".join(m["content"] for m in row["prompt"]))
    return texts


def speed(corpus: Path, root: Path, length: str, samples: int) -> None:
    """Construction tokens/s over tokenizing-once tokens/s, per method."""
    from lcsynth.backends.none import NoModelBackend
    from lcsynth.config import BackendSpec

    tokenizer = NoModelBackend(BackendSpec(type="none")).tokenizer
    print(f"{'method':<12} {'tokens':>9} {'build s':>8} {'tokenize s':>10} {'ratio':>6}")
    for name, method in METHODS.items():
        spec = recipe(corpus, root, method, length, samples, name)
        asyncio.run(run_recipe(spec, show_progress=False))  # warm: store and indexes built, pages cached
        started = time.perf_counter()
        summary = asyncio.run(run_recipe(spec, show_progress=False))
        built = time.perf_counter() - started
        texts = produced_texts(summary.run_dir)
        started = time.perf_counter()
        tokens = sum(len(tokenizer.encode(t)) for t in texts)
        once = time.perf_counter() - started
        print(f"{name:<12} {tokens:>9} {built:>8.2f} {once:>10.2f} {(tokens / built) / (tokens / once):>6.2f}")


def child(corpus: str, root: str, length: str, samples: int) -> None:
    """One run in a fresh process; prints its peak RSS in KiB."""
    spec = recipe(Path(corpus), Path(root), METHODS["untie_knots"], length, samples, "rss")
    asyncio.run(run_recipe(spec, show_progress=False))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory(folder: Path, length: str, samples: int) -> None:
    """Peak RSS at 10x corpus size over 1x (each in its own process, store built inside the run)."""
    peaks = {}
    for copies in (1, 10):
        corpus = write_corpus(folder / f"corpus{copies}.jsonl", copies)
        out = subprocess.run([sys.executable, __file__, "--child", str(corpus), str(folder / f"out{copies}"),
                              length, str(samples)], capture_output=True, text=True, check=True)
        peaks[copies] = int(out.stdout.split()[-1])
        print(f"corpus x{copies:<3} {corpus.stat().st_size / 1e6:7.1f} MB   peak RSS {peaks[copies] / 1024:7.1f} MiB")
    print(f"peak RSS ratio 10x / 1x: {peaks[10] / peaks[1]:.2f}")


def main() -> None:
    """Run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", default="32k")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        speed(write_corpus(folder / "corpus.jsonl", 1), folder / "speed", args.length, args.samples)
        memory(folder, args.length, args.samples)


if __name__ == "__main__":
    main()
