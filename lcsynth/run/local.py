"""Running a whole recipe in this process: backend, cache, token store, plan, runner, then manifest and report.

`run_recipe` is the local executor; `run.ray_executor` shares its start (`resume.guarded_run`) and its end
(`finish_run`) and spreads the units over a Ray cluster instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcsynth.backends.base import Backend, create_backend
from lcsynth.backends.batch import BatchBackend
from lcsynth.backends.cache import RequestCache, merge_worker_caches
from lcsynth.config import Recipe
from lcsynth.corpus.documents import (
    EARLY_WORKERS_BYTES,
    corpus_bytes,
    counted_documents,
    document_stats,
    fitted_documents,
)
from lcsynth.corpus.fitting import Fitter
from lcsynth.counters import RunCounters
from lcsynth.errors import ConfigError, InputError
from lcsynth.out.filters import check_scoring
from lcsynth.out.manifest import build_manifest, write_json
from lcsynth.out.report import write_report
from lcsynth.out.sink import RunWriter
from lcsynth.run.plan import method_context, plan_units, unit_total
from lcsynth.run.progress import RunProgress
from lcsynth.run.resume import CHECKPOINT, RunStart, guarded_run
from lcsynth.run.runner import UnitRunner


@dataclass
class RunSummary:
    """What a finished run produced."""

    run_dir: Path
    rows: dict[str, int]
    rejects: dict[str, int]
    manifest: dict[str, Any]
    timings: dict[str, Any]
    pending: int = 0
    batch_requests: int = 0


def check_corpus_was_read(recipe: Recipe, stats: dict[str, int], runner: UnitRunner) -> None:
    """An empty corpus is a mistake, not a run with no rows."""
    if not stats["documents_read"] and not runner.units:
        raise InputError(f"corpus: no documents in {recipe.corpus.path or recipe.corpus.type}; nothing to do")


def finish_run(start: RunStart, recipe: Recipe, model_id: str, stats: dict[str, int], runner: UnitRunner,
               writer: RunWriter, files: dict[str, Any], timings: dict[str, Any],
               batch_requests: int = 0) -> RunSummary:
    """Write the manifest, drop the checkpoint, write the report and timings; the run is then finished."""
    run_dir = start.run_dir
    manifest = build_manifest(recipe, model_id, stats, runner.usage, runner.units, writer, files)
    manifest["counts"]["pending"] = runner.pending
    write_json(run_dir / "manifest.json", manifest)
    (run_dir / CHECKPOINT).unlink()
    write_report(run_dir)
    timings = {"wall_seconds": round(time.time() - start.started, 3), **timings}
    write_json(run_dir / "timings.json", timings)
    return RunSummary(run_dir, dict(writer.rows), dict(writer.rejects), manifest, timings, runner.pending,
                      batch_requests)


def rates(counters: RunCounters, generating: float, cpu: float | None = None) -> dict[str, Any]:
    """Generation time (and this process's CPU time over it, all threads) and the request and token rates."""
    return {
        "generation_seconds": round(generating, 3),
        **({"generation_cpu_seconds": round(cpu, 3)} if cpu is not None else {}),
        "requests_per_second": round(counters.requests / generating, 3) if generating else None,
        "completion_tokens_per_second": round(counters.completion_tokens / generating, 1) if generating else None,
    }


async def run_recipe(recipe: Recipe, backend: Backend | None = None, show_progress: bool = True,
                     batch_out: Path | None = None, retry_reasons: list[str] | None = None) -> RunSummary:
    """Run a whole recipe in this process and write its outputs; returns counts and the manifest.

    With `batch_out`, uncached requests are written there as an OpenAI batch file instead of being sent.
    With `retry_reasons` (a list; empty means every reason), the finished run of this name is made again:
    its rejected units run with new seeds, everything else replays from the cache.
    The run folder is locked for the run; if the run fails, the finished run it was replacing comes back.
    """
    with guarded_run(recipe, batch_out, retry_reasons) as start:
        return await _run_locally(recipe, start, backend, show_progress, batch_out)


async def _run_locally(recipe: Recipe, start: RunStart, backend: Backend | None, show_progress: bool,
                       batch_out: Path | None) -> RunSummary:
    methods, state, run_dir = start.methods, start.state, start.run_dir
    backend = backend or create_backend(recipe.backend)
    if batch_out is not None:
        if not recipe.cache.enabled:
            raise ConfigError("--batch-out needs the request cache (cache.enabled: true): results come back through it")
        backend = BatchBackend(backend, recipe.backend)
    cache = RequestCache(recipe.cache_path()) if recipe.cache.enabled else None
    if cache is not None:
        merge_worker_caches(cache)  # answers a killed Ray run's replicas kept
    writer: RunWriter | None = None
    fitter = Fitter(backend.tokenizer, recipe.limits.token_counting_processes)
    try:
        if corpus_bytes(recipe) >= EARLY_WORKERS_BYTES:
            fitter.start()  # a worker loads while the backend starts, rather than after 256 documents
        check_scoring(recipe.filters, backend)
        await backend.start()
        backend_ready, cpu_ready = time.time(), time.process_time()
        counters = RunCounters()
        ctx = method_context(recipe, backend, methods, counters, cache)
        writer = RunWriter(run_dir, recipe.output.shard_rows, state["writer"] if state else None)
        stats = document_stats()
        for method in methods:
            for key, reject in await method.prepare(ctx, run_dir):
                writer.write_reject(key, reject.reason, reject.detail, reject.raw, reject.request_hash)
        concurrency = min(recipe.limits.max_in_flight, backend.max_concurrency)
        docs = fitted_documents(recipe, backend.tokenizer, ctx.document_limit, ctx.store, fitter)
        with RunProgress(counters, stats, show_progress, unit_total(recipe, methods), recipe.backend.price) as progress:
            runner = UnitRunner(ctx, writer, recipe, concurrency, progress, state)
            runner.attempts = start.attempts or {}
            try:
                await runner.run(plan_units(counted_documents(docs, stats), methods, ctx))
            finally:
                docs.close()
        check_corpus_was_read(recipe, stats, runner)
        runner.checkpoint(final=True)
        files = writer.close()
        batch_requests = backend.write(batch_out) if isinstance(backend, BatchBackend) and batch_out else 0
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        fitter.close()
        await backend.aclose()
        if cache is not None:
            cache.close()
    timings = {
        "backend_start_seconds": round(backend_ready - start.started, 3),
        "cache_hits": counters.cache_hits,
        "retries": getattr(backend, "retries", 0),
        **rates(counters, time.time() - backend_ready, time.process_time() - cpu_ready),
    }
    return finish_run(start, recipe, backend.model_id, stats, runner, writer, files, timings, batch_requests)

