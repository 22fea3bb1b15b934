"""Benchmark: long-sample construction speed, as a ratio against tokenizing the output once in the same run.

Tokens/s of building samples (KeyChain, Untie-the-Knots, NExtLong; corpus store already built) divided by
tokens/s of tokenizing the produced text once with the same tokenizer. Building and tokenizing alternate,
after a warm-up run; the best repetition of each counts. Target >= 0.8. (Memory: bench/memory.py.)

Run: python bench/construct.py [--quick] [--length 32k] [--samples 32] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from lcsynth.config import Recipe, validate_recipe
from lcsynth.corpus.demo import iter_demo_documents
from lcsynth.run.local import run_recipe

METHODS = {
    "keychain": {"name": "keychain", "qa": "demo"},
    "untie_knots": {"name": "untie_knots", "tracing_rows": 0},
    "nextlong": {"name": "nextlong"},
}


def write_corpus(path: Path) -> Path:
    """The demo corpus as JSONL."""
    with path.open("w", encoding="utf-8") as handle:
        for doc in iter_demo_documents():
            handle.write(json.dumps({"id": doc.id, "text": doc.text}) + "\n")
    return path


def recipe(corpus: Path, root: Path, method: dict, length: str, samples: int, name: str) -> Recipe:
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


def speed(corpus: Path, root: Path, length: str, samples: int, reps: int) -> list[float]:
    """Construction tokens/s over tokenizing-once tokens/s, per method; prints a table, returns the ratios."""
    from lcsynth.backends.none import NoModelBackend
    from lcsynth.config import BackendSpec

    tokenizer = NoModelBackend(BackendSpec(type="none")).tokenizer
    print(f"{'method':<12} {'rows':>5} {'tokens':>9} {'build s':>8} {'tokenize s':>10} {'ratio':>6}")
    ratios = []
    for name, method in METHODS.items():
        spec = recipe(corpus, root, method, length, samples, name)
        asyncio.run(run_recipe(spec, show_progress=False))  # warm: store and indexes built, pages cached
        built = once = float("inf")
        for _ in range(reps):
            started = time.perf_counter()
            summary = asyncio.run(run_recipe(spec, show_progress=False))
            built = min(built, time.perf_counter() - started)
            texts = produced_texts(summary.run_dir)
            started = time.perf_counter()
            tokens = sum(len(tokenizer.encode(t)) for t in texts)
            once = min(once, time.perf_counter() - started)
        ratios.append(once / built)  # same tokens on both sides: the ratio of rates is the inverse ratio of times
        print(f"{name:<12} {len(texts):>5} {tokens:>9} {built:>8.2f} {once:>10.2f} {ratios[-1]:>6.2f}")
    return ratios


def main(argv: list[str] | None = None) -> None:
    """Run the speed comparison and print the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 samples at 8K, one repetition")
    parser.add_argument("--length", default="32k")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.length, args.samples, args.reps = "8k", 4, 1
    print(f"{args.samples} samples at {args.length} per method; best of {args.reps} after a warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ratios = speed(write_corpus(folder / "corpus.jsonl"), folder / "speed", args.length, args.samples, args.reps)
    detail = ", ".join(f"{name} {r:.2f}" for name, r in zip(METHODS, ratios, strict=True))
    print(f"summary: construction / tokenize-once tokens/s ratio {min(ratios):.2f} ({detail}; target >= 0.8)")


if __name__ == "__main__":
    main()
