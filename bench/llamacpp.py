"""Benchmark: lcsynth's embedded llama.cpp backend against llama.cpp called directly, same prompts and settings.

- complete: chat prompts built from demo-corpus documents, sent through `llama_cpp.Llama.create_completion`
  (the baseline, prompt text rendered beforehand) and through lcsynth's backend (`create_backend` +
  `await complete(Request)`), the two alternating request by request.
- run_recipe: a LongMagpie recipe end to end (corpus read, fitting, rows, manifest and report written; request
  cache off). Each request the run makes is also sent to llama.cpp directly, just before or just after the
  backend answers it (alternately); the run's time is its wall time less those direct calls.

Each side has its own `Llama` with the settings of lcsynth's backend (n_ctx, n_threads, n_batch, seed), so each
sees the same sequence of prompts and the same KV-cache reuse. Alternating request by request keeps a busy
machine from favouring one side. The first repetition is a warm-up; a side's best time adds up its best time
for each request (complete) or is its best repetition (run_recipe). Ratio = backend tokens/s over raw tokens/s.
Target >= 0.95.

Run: python bench/llamacpp.py [--quick] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_cpp import Llama

from lcsynth.backends.base import Completion, Request, create_backend
from lcsynth.backends.llamacpp import LlamaCppBackend
from lcsynth.config import BackendSpec, Recipe, validate_recipe
from lcsynth.corpus.demo import iter_demo_documents
from lcsynth.run.local import run_recipe
from lcsynth.text.tokens import fit_tokens

CONTEXT_LENGTH = 8192
QUESTION = "\n\nWrite three questions a reader could answer from the text above, then answer the first."
Usage = tuple[int, int, str]  # prompt tokens, completion tokens, text


@dataclass
class Side:
    """Timings and token counts of one way of running the same work."""

    name: str
    reps: list[float] = field(default_factory=list)  # seconds of each timed repetition
    best: float = float("inf")
    usages: list[Usage] = field(default_factory=list)

    def tokens(self) -> int:
        """Prompt plus completion tokens of one repetition."""
        return sum(u[0] + u[1] for u in self.usages)

    def rate(self) -> float:
        """Tokens per second at the best time."""
        return self.tokens() / self.best


def raw_llama(backend: LlamaCppBackend) -> Llama:
    """A second `Llama` on the same GGUF with the settings lcsynth's backend chose."""
    own = backend._llama
    return Llama(model_path=own.model_path, n_ctx=own.n_ctx(), n_threads=own.n_threads, n_batch=own.n_batch,
                 n_threads_batch=own.context_params.n_threads_batch, seed=0, verbose=False)


def raw_generate(llama: Llama, prompt: str, request: Request) -> tuple[float, Usage]:
    """llama.cpp called directly with a request's sampling settings; seconds and usage."""
    started = time.perf_counter()
    out = llama.create_completion(prompt, max_tokens=request.max_tokens, temperature=request.temperature,
                                  top_p=request.top_p, stop=list(request.stop) or None, seed=request.seed)
    seconds = time.perf_counter() - started
    return seconds, (out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"], out["choices"][0]["text"])


def usage_of(completion: Completion) -> Usage:
    """(prompt tokens, completion tokens, text) of a completion."""
    return completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.text


def chat_requests(backend: LlamaCppBackend, count: int, doc_tokens: int, max_tokens: int) -> list[Request]:
    """One chat request per demo document: its first `doc_tokens` tokens and a fixed instruction, greedy."""
    requests = []
    for i, doc in enumerate(d for d in iter_demo_documents() if len(d.text) >= 8000):
        if i == count:
            break
        text = fit_tokens(backend.tokenizer, doc.text, doc_tokens, "head")[0]
        requests.append(Request.chat([{"role": "user", "content": text + QUESTION}], max_tokens=max_tokens,
                                     temperature=0.0, seed=i))
    return requests


def bench_complete(backend: LlamaCppBackend, raw: Llama, loop: asyncio.AbstractEventLoop, args: argparse.Namespace
                   ) -> tuple[Side, Side]:
    """The same chat requests through llama.cpp directly and through `backend.complete`, alternating."""
    requests = chat_requests(backend, args.prompts, args.doc_tokens, args.max_tokens)
    prompts = [backend.prompt_of(r) for r in requests]

    def through_backend(request: Request) -> tuple[float, Usage]:
        started = time.perf_counter()
        completion = loop.run_until_complete(backend.complete(request))
        return time.perf_counter() - started, usage_of(completion)

    base, subject = Side("llama.cpp"), Side("backend.complete")
    sides = [(base, lambda p, r: raw_generate(raw, p, r)), (subject, lambda p, r: through_backend(r))]
    fastest = {side.name: [float("inf")] * len(requests) for side, _ in sides}
    for rep in range(args.reps + 1):
        totals = dict.fromkeys(fastest, 0.0)
        base.usages, subject.usages = [], []
        for i, (prompt, request) in enumerate(zip(prompts, requests, strict=True)):
            for side, call in sides if (rep + i) % 2 == 0 else sides[::-1]:
                seconds, usage = call(prompt, request)
                side.usages.append(usage)
                totals[side.name] += seconds
                if rep:
                    fastest[side.name][i] = min(fastest[side.name][i], seconds)
        for side, _ in sides if rep else ():
            side.reps.append(totals[side.name])
    for side, _ in sides:
        side.best = sum(fastest[side.name])
    return base, subject


class PairedBackend:
    """lcsynth's backend for a run, with each request also sent to llama.cpp directly and timed apart."""

    def __init__(self, inner: LlamaCppBackend, raw: Llama | None = None, prompts: list[str] | None = None) -> None:
        self.inner, self.raw, self.prompts = inner, raw, prompts or []
        self.requests: list[Request] = []
        self.usages: list[Usage] = []
        self.raw_usages: list[Usage] = []
        self.raw_seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start(self) -> None:
        self.requests, self.usages, self.raw_usages, self.raw_seconds = [], [], [], 0.0

    def _raw(self, index: int, request: Request) -> None:
        if self.raw is not None:
            seconds, usage = raw_generate(self.raw, self.prompts[index], request)
            self.raw_seconds += seconds
            self.raw_usages.append(usage)

    async def complete(self, request: Request) -> Completion:
        index = len(self.requests)
        self.requests.append(request)
        if index % 2 == 0:
            self._raw(index, request)
        completion = await self.inner.complete(request)
        if index % 2 == 1:
            self._raw(index, request)
        self.usages.append(usage_of(completion))
        return completion

    async def aclose(self) -> None:
        """The benchmark closes the real backend itself, after all repetitions."""


def longmagpie_recipe(folder: Path, args: argparse.Namespace) -> Recipe:
    """A LongMagpie recipe over a JSONL copy of demo documents, request cache off."""
    corpus = folder / "corpus.jsonl"
    docs = [d for d in iter_demo_documents() if len(d.text) >= 8000][: args.documents]
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs), encoding="utf-8")
    return validate_recipe({
        "seed": 0, "corpus": {"type": "jsonl", "path": str(corpus)},
        "backend": {"type": "llamacpp", "context_length": CONTEXT_LENGTH},
        "context": {"max_document_tokens": args.doc_tokens},
        "methods": [{"name": "longmagpie", "samples_per_document": 2, "query_max_tokens": args.max_tokens,
                     "answer_max_tokens": args.max_tokens}],
        "output": {"root": str(folder / "out"), "name": "longmagpie"}, "cache": {"enabled": False},
    }, "bench")


def bench_run_recipe(backend: LlamaCppBackend, raw: Llama, loop: asyncio.AbstractEventLoop,
                     args: argparse.Namespace, folder: Path) -> tuple[Side, Side]:
    """A LongMagpie run end to end against its own requests sent to llama.cpp directly along the way."""
    recipe, learn = longmagpie_recipe(folder, args), PairedBackend(backend)
    loop.run_until_complete(run_recipe(recipe, backend=learn, show_progress=False))  # learn the requests
    paired = PairedBackend(backend, raw, [backend.prompt_of(r) for r in learn.requests])
    base, subject = Side("llama.cpp"), Side("run_recipe")
    for rep in range(args.reps + 1):
        started = time.perf_counter()
        loop.run_until_complete(run_recipe(recipe, backend=paired, show_progress=False))
        wall = time.perf_counter() - started
        if paired.requests != learn.requests:
            raise RuntimeError("the run made different requests this time; the comparison would not be fair")
        if rep:
            base.reps.append(paired.raw_seconds)
            subject.reps.append(wall - paired.raw_seconds)
    base.usages, subject.usages = paired.raw_usages, paired.usages
    base.best, subject.best = min(base.reps), min(subject.reps)
    return base, subject


def table(rows: list[tuple[str, Side, Side]]) -> list[float]:
    """Print one line per side and return the ratio of each comparison."""
    print(f"{'case':<11} {'side':<17} {'requests':>8} {'prompt tok':>10} {'compl tok':>9} {'best s':>7} "
          f"{'median s':>8} {'tok/s':>7} {'ratio':>6} {'same text':>9}")
    ratios = []
    for case, base, subject in rows:
        ratio = subject.rate() / base.rate()
        ratios.append(ratio)
        same = [u[2] for u in base.usages] == [u[2] for u in subject.usages]
        for side in (base, subject):
            mark = f"{ratio:>6.3f} {'yes' if same else 'NO':>9}" if side is subject else ""
            print(f"{case:<11} {side.name:<17} {len(side.usages):>8} {sum(u[0] for u in side.usages):>10} "
                  f"{sum(u[1] for u in side.usages):>9} {side.best:>7.2f} {statistics.median(side.reps):>8.2f} "
                  f"{side.rate():>7.0f} {mark}")
    return ratios


def main(argv: list[str] | None = None) -> None:
    """Run both comparisons and print the table and the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny workload: checks the benchmark runs")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per side (after one warm-up)")
    args = parser.parse_args(argv)
    sizes = {"prompts": 2, "documents": 1, "doc_tokens": 128, "max_tokens": 8} if args.quick else \
        {"prompts": 4, "documents": 2, "doc_tokens": 384, "max_tokens": 48}
    args.reps = 1 if args.quick else args.reps
    vars(args).update(sizes)
    backend = create_backend(BackendSpec(type="llamacpp", context_length=CONTEXT_LENGTH))
    raw = raw_llama(backend)
    print(f"model {Path(raw.model_path).name}; both sides: n_ctx {raw.n_ctx()}, n_threads {raw.n_threads}, "
          f"n_batch {raw.n_batch}; {args.reps} timed repetitions after a warm-up, alternating request by request")
    loop = asyncio.new_event_loop()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [("complete", *bench_complete(backend, raw, loop, args)),
                    ("run_recipe", *bench_run_recipe(backend, raw, loop, args, Path(tmp)))]
        complete, end_to_end = table(rows)
    finally:
        loop.run_until_complete(backend.aclose())
        loop.close()
        raw.close()
    print(f"summary: llama.cpp backend/raw tokens/s ratio {min(complete, end_to_end):.3f} (complete {complete:.3f},"
          f" run_recipe {end_to_end:.3f}; target >= 0.95)")


if __name__ == "__main__":
    main()
