"""Benchmark on a GPU: lcsynth's vllm backend against vLLM's own `LLM.generate`; prefix caching on against off.

- throughput: the same chat prompts (demo-corpus passages, greedy, fixed max_tokens) through `LLM.generate`
  (text rendered with the tokenizer's chat template) and through lcsynth's backend (`complete(Request)` for all
  of them at once, as a run keeps its units in flight). Output tokens/s; ratio backend/raw, target >= 0.95.
- prefix caching: LongMagpie and LongPO end to end (`run_recipe`, request cache off, JSONL copy of the demo
  corpus) on two lcsynth engines, prefix caching on and off. Speed-up = seconds off / seconds on.

Both engines of a comparison share the GPU and the settings lcsynth's backend gives vLLM; repetitions alternate
which goes first, each starts with an empty prefix cache, and a warm-up is not timed. Figures are written to
`--out` (default `$OUT/vllm_gpu.json`) after every step, so a run cut short keeps what it measured.

Run (GPU machine, vllm installed): python bench/vllm_gpu.py --model HF_MODEL_FOLDER [--quick] [--budget 480]
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GPU_SHARE = 0.25  # of GPU memory per engine: three engines live at once


class Figures:
    """Results, saved to JSON after every change."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        print(f"{key}: {json.dumps(value)}", flush=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1), encoding="utf-8")


def backend_spec(model: str, prefix_caching: bool) -> Any:
    """The backend section both sides are built from."""
    from lcsynth.config import BackendSpec

    return BackendSpec(type="vllm", model=model, context_length=8192, max_concurrency=1024,
                       options={"gpu_memory_utilization": GPU_SHARE, "enable_prefix_caching": prefix_caching})


def chat_prompts(hf: Any, count: int, passage_tokens: int) -> list[list[dict[str, str]]]:
    """`count` distinct chat prompts: consecutive passages of demo-corpus documents and one instruction."""
    from lcsynth.corpus.demo import iter_demo_documents

    docs = [hf.encode(d.text, add_special_tokens=False) for d in iter_demo_documents() if len(d.text) >= 8000]
    prompts = []
    for i in range(count):
        ids = docs[i % len(docs)]
        start = (i // len(docs)) * passage_tokens % max(1, len(ids) - passage_tokens)
        passage = hf.decode(ids[start : start + passage_tokens])
        prompts.append([{"role": "user", "content": f"{passage}\n\nSummarise the text above in five sentences."}])
    return prompts


def time_raw(llm: Any, texts: list[str], requests: list[Any]) -> tuple[float, int, int]:
    """Seconds, prompt tokens and output tokens of one `LLM.generate` over all prompts."""
    from vllm import SamplingParams

    params = [SamplingParams(max_tokens=r.max_tokens, temperature=r.temperature, top_p=r.top_p, seed=r.seed)
              for r in requests]
    llm.reset_prefix_cache()
    started = time.perf_counter()
    outputs = llm.generate(texts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    return (seconds, sum(len(o.prompt_token_ids) for o in outputs),
            sum(len(o.outputs[0].token_ids) for o in outputs))


async def time_backend(backend: Any, requests: list[Any]) -> tuple[float, int, int]:
    """Seconds, prompt tokens and output tokens of all requests through lcsynth's backend at once."""
    await backend.engine.reset_prefix_cache()
    started = time.perf_counter()
    done = await asyncio.gather(*(backend.complete(r) for r in requests))
    seconds = time.perf_counter() - started
    return seconds, sum(c.usage.prompt_tokens for c in done), sum(c.usage.completion_tokens for c in done)


def throughput(args: argparse.Namespace, loop: asyncio.AbstractEventLoop, backend: Any, figures: Figures) -> None:
    """The same greedy chat prompts through `LLM.generate` and through the backend, interleaved."""
    from vllm import LLM

    from lcsynth.backends.base import Request
    from lcsynth.backends.vllm import engine_args

    settings = engine_args(backend_spec(args.model, True))
    started = time.perf_counter()
    llm = LLM(**settings)
    figures.put("raw_engine_start_s", round(time.perf_counter() - started, 1))
    hf = backend.tokenizer.hf
    messages = chat_prompts(hf, args.prompts, args.passage_tokens)
    texts = [hf.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    ours = [backend.chat_template.render(m, add_generation_prompt=True) for m in messages]
    requests = [Request.chat(m, max_tokens=args.max_tokens, temperature=0.0, seed=i) for i, m in enumerate(messages)]
    runs: dict[str, list[tuple[float, int, int]]] = {"raw": [], "backend": []}
    sides = [("raw", lambda: time_raw(llm, texts, requests)),
             ("backend", lambda: loop.run_until_complete(time_backend(backend, requests)))]
    for rep in range(args.reps + 1):
        for name, run in sides if rep % 2 == 0 else sides[::-1]:
            result = run()
            if rep:
                runs[name].append(result)
    rates = {name: max(r[2] / r[0] for r in results) for name, results in runs.items()}
    figures.put("throughput", {
        "settings": {k: v for k, v in settings.items() if k != "model"}, "prompts": args.prompts,
        "passage_tokens": args.passage_tokens, "max_tokens": args.max_tokens, "same_prompt_text": texts == ours,
        **{f"{name}_runs": [[round(s, 3), p, c] for s, p, c in results] for name, results in runs.items()},
        "raw_output_tok_s": round(rates["raw"]), "backend_output_tok_s": round(rates["backend"]),
        "ratio": round(rates["backend"] / rates["raw"], 3)})


class KeptBackend:
    """A backend a run may use and 'close' repeatedly; each run starts with an empty prefix cache."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def start(self) -> None:
        await self.inner.engine.reset_prefix_cache()

    async def aclose(self) -> None:
        """Closed by the benchmark at the end."""


def method_recipe(method: str, corpus: Path, folder: Path, args: argparse.Namespace, documents: int | None) -> Any:
    """LongMagpie or LongPO over the JSONL corpus, request cache off, everything in flight at once."""
    from lcsynth.config import validate_recipe

    params = {"longmagpie": {"name": "longmagpie", "samples_per_document": 8, "query_max_tokens": 96,
                             "answer_max_tokens": 256, "temperature": 0.7},
              "longpo": {"name": "longpo", "samples_per_document": 4, "chunk_tokens": 512, "questions": 4,
                         "instruction_max_tokens": 256, "answer_max_tokens": 256}}[method]
    return validate_recipe({
        "seed": 0, "corpus": {"type": "jsonl", "path": str(corpus)},
        "backend": backend_spec(args.model, True).model_dump(), "context": {"max_document_tokens": args.doc_tokens},
        "methods": [params], "output": {"root": str(folder), "name": method}, "cache": {"enabled": False},
        "limits": {"max_documents": documents, "max_in_flight": 1024},
    }, "bench")


def prefix_caching(args: argparse.Namespace, loop: asyncio.AbstractEventLoop, engines: dict[str, Any],
                   method: str, folder: Path, figures: Figures) -> None:
    """One method end to end on the engine with prefix caching and the one without, interleaved."""
    from lcsynth.run.local import run_recipe

    corpus = folder / "corpus.jsonl"
    recipe = method_recipe(method, corpus, folder, args, args.documents)
    warm = method_recipe(method, corpus, folder, args, 2)
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for rep in range(args.reps + 1):
        for side in ("on", "off") if rep % 2 == 0 else ("off", "on"):
            started = time.perf_counter()
            summary = loop.run_until_complete(run_recipe(recipe if rep else warm, backend=KeptBackend(engines[side]),
                                                         show_progress=False))
            if rep:
                tokens = summary.manifest["tokens"]
                runs[side].append({"seconds": round(time.perf_counter() - started, 2), "rows": summary.rows,
                                   "requests": tokens["requests"], "prompt_tokens": tokens["prompt"],
                                   "completion_tokens": tokens["completion"]})
    best = {side: min(r["seconds"] for r in results) for side, results in runs.items()}
    figures.put(f"prefix_caching_{method}", {"runs": runs, "best_on_s": best["on"], "best_off_s": best["off"],
                                             "speedup": round(best["off"] / best["on"], 2)})


def write_corpus(path: Path) -> None:
    """The demo corpus as JSONL, so runs read a file rather than render pages."""
    from lcsynth.corpus.demo import iter_demo_documents

    with path.open("w", encoding="utf-8") as handle:
        for doc in iter_demo_documents():
            handle.write(json.dumps({"id": doc.id, "text": doc.text}) + "\n")


def environment(figures: Figures) -> None:
    """vLLM version and GPU name (read with nvidia-smi: this process must not initialise CUDA itself)."""
    import vllm

    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        gpu = f"unknown ({exc})"
    figures.put("environment", {"vllm": vllm.__version__, "gpu": gpu, "python": sys.version.split()[0]})


def summary_line(data: dict[str, Any]) -> str:
    """The last line: the backend/raw ratio and the prefix-caching speed-ups measured."""
    throughput = data.get("throughput")
    ratio = throughput["ratio"] if isinstance(throughput, dict) else float("nan")
    found = {m: data.get(f"prefix_caching_{m}") for m in ("longmagpie", "longpo")}
    speedups = ", ".join(f"{m} {v['speedup']}x" for m, v in found.items() if isinstance(v, dict))
    return f"summary: vllm backend/raw output tokens/s ratio {ratio} (target >= 0.95); prefix caching speed-up: " \
           f"{speedups or 'not measured'}"


async def started_backend(spec: Any) -> Any:
    """lcsynth's vllm backend, built inside the event loop as a run builds it."""
    from lcsynth.backends.base import create_backend

    backend = create_backend(spec)
    await backend.start()
    return backend


def run(args: argparse.Namespace, figures: Figures) -> None:
    """Every step in turn, skipping what the time budget no longer allows."""
    deadline = time.monotonic() + args.budget
    figures.put("command", " ".join(["python", *sys.argv]))
    environment(figures)
    loop = asyncio.new_event_loop()
    engines: dict[str, Any] = {}
    try:
        for side in ("on", "off") if args.methods else ("on",):
            started = time.perf_counter()
            engines[side] = loop.run_until_complete(started_backend(backend_spec(args.model, side == "on")))
            figures.put(f"backend_start_{side}_s", round(time.perf_counter() - started, 1))
        throughput(args, loop, engines["on"], figures)
        with tempfile.TemporaryDirectory() as tmp:
            write_corpus(Path(tmp) / "corpus.jsonl")
            for method in args.methods:
                if time.monotonic() > deadline - args.method_seconds:
                    figures.put(f"prefix_caching_{method}", "skipped: time budget spent")
                    continue
                prefix_caching(args, loop, engines, method, Path(tmp), figures)
    finally:
        for backend in engines.values():
            loop.run_until_complete(backend.aclose())
    print(summary_line(figures.data), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run with a watchdog, and exit without waiting on engine threads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hugging Face model folder (or hub name) vLLM can load")
    parser.add_argument("--quick", action="store_true", help="small workloads, one repetition")
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions per side after a warm-up")
    parser.add_argument("--budget", type=float, default=480, help="seconds; later steps are skipped past it")
    parser.add_argument("--methods", nargs="*", default=["longmagpie", "longpo"], choices=["longmagpie", "longpo"],
                        help="methods to run with prefix caching on and off (none: throughput only)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "."), "vllm_gpu.json"))
    args = parser.parse_args(argv)
    sizes = dict(prompts=512, passage_tokens=1024, max_tokens=128, documents=None, doc_tokens=4096,
                 method_seconds=120)
    if args.quick:
        sizes.update(prompts=16, passage_tokens=128, max_tokens=16, documents=3, doc_tokens=1024, method_seconds=30)
        args.reps = 1
    vars(args).update(sizes)
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    faulthandler.dump_traceback_later(args.budget + 120, exit=True)  # a hung engine must not hold the machine
    code = 0
    try:
        run(args, Figures(args.out))
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    os._exit(code)  # vLLM's engine threads can keep a finished process alive


if __name__ == "__main__":
    main()
