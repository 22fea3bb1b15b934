"""Runs a recipe: streams documents, fits them to the context, runs methods, writes rows in a fixed order."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lcsynth.backends.base import Backend, create_backend
from lcsynth.batch import BatchBackend
from lcsynth.cache import RequestCache
from lcsynth.config import Recipe
from lcsynth.corpus import Document, iter_documents
from lcsynth.errors import ConfigError, Pending, Reject
from lcsynth.manifest import build_manifest, write_json
from lcsynth.methods.base import Method, MethodContext, Record, RunCounters, create_method, unit_rng
from lcsynth.progress import RunProgress
from lcsynth.sink import RunWriter
from lcsynth.tokens import fit_tokens


@dataclass(frozen=True)
class Unit:
    """One (method, document, sample) to run; `index` fixes its place in the output.

    A document the run cannot use becomes a unit too, with no method and its `skip` reason, so that
    its reject is written in the same fixed order as everything else.
    """

    index: int
    method: Method | None
    doc: Document
    sample: int | None
    skip: Reject | None = None

    def key(self) -> dict[str, Any]:
        """The unit's identity as written in rejects."""
        return {"method": self.method.name if self.method else None, "doc_id": self.doc.id, "sample": self.sample}


@dataclass
class RunSummary:
    """What a finished run produced."""

    run_dir: Path
    rows: dict[str, int]
    rejects: dict[str, int]
    manifest: dict[str, Any]
    pending: int = 0
    batch_requests: int = 0


def prepare_run_dir(recipe: Recipe) -> Path:
    """Create the run folder, clearing an earlier run of the same name when `output.overwrite` allows."""
    run_dir = recipe.run_dir()
    if run_dir.exists() and any(run_dir.iterdir()):
        if not recipe.output.overwrite:
            raise ConfigError(f"output: {run_dir} already holds a run; choose another output.name or set overwrite")
        if not (run_dir / "manifest.json").exists() and not any(run_dir.glob("*.partial")):
            raise ConfigError(f"output: {run_dir} is not empty and holds no lcsynth run; refusing to clear it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def fitted_documents(recipe: Recipe, backend: Backend, token_limit: int,
                     stats: dict[str, int]) -> Iterator[tuple[Document, Reject | None]]:
    """Stream the corpus, fitting each document into `token_limit` tokens or saying why it is skipped."""
    overflow = recipe.context.overflow
    for read, doc in enumerate(iter_documents(recipe.corpus)):
        if recipe.limits.max_documents is not None and read >= recipe.limits.max_documents:
            return
        stats["documents_read"] += 1
        if not doc.text.strip() or len(doc.text) < recipe.corpus.min_chars:
            yield doc, Reject("document_too_short", f"{len(doc.text)} characters")
            continue
        how = "head" if overflow == "skip" else overflow
        text, kept, total = fit_tokens(backend.tokenizer, doc.text, token_limit, how)
        if kept < total and overflow == "skip":
            yield doc, Reject("document_too_long", f"{total} tokens > limit {token_limit}")
            continue
        stats["documents_truncated"] += kept < total
        stats["document_tokens"] += kept
        meta = {**doc.meta, "tokens": kept, "original_tokens": total, "truncated": kept < total}
        yield replace(doc, text=text, meta=meta), None


def document_token_limit(recipe: Recipe, backend: Backend, methods: list[Method]) -> int:
    """Tokens a document may take: the context minus the largest method budget, capped by the recipe."""
    limit = backend.context_length - max(m.reserved_tokens() for m in methods)
    if recipe.context.max_document_tokens:
        limit = min(limit, recipe.context.max_document_tokens)
    if limit <= 0:
        raise ConfigError(
            f"context: the model's {backend.context_length}-token context leaves no room for documents "
            "after the methods' generation budgets; lower the max_tokens parameters or raise backend.context_length"
        )
    return limit


def plan_units(docs: Iterator[tuple[Document, Reject | None]], methods: list[Method]) -> Iterator[Unit]:
    """Every (method, document, sample), numbered in output order; a skipped document is one unit."""
    index = 0
    for doc, skip in docs:
        if skip is not None:  # the text is not needed to record why the document was skipped
            yield Unit(index, None, replace(doc, text=""), None, skip)
            index += 1
            continue
        for method in methods:
            for sample in range(method.samples_per_document):
                yield Unit(index, method, doc, sample)
                index += 1


async def run_unit(unit: Unit, ctx: MethodContext, seed: int) -> list[Record] | Reject | Pending:
    """Run one unit; a Reject (with the hash of the request behind it) or Pending is returned, not raised."""
    assert unit.method is not None and unit.sample is not None
    rng = unit_rng(seed, unit.method.name, unit.doc.id, unit.sample)
    unit_ctx = ctx.fork()
    try:
        return await unit.method.run(unit.doc, unit.sample, unit_ctx, rng)
    except Reject as reject:
        reject.request_hash = unit_ctx.last_request_hash
        return reject
    except Pending as pending:
        return pending


class UnitRunner:
    """Runs units with bounded concurrency and commits their outcomes strictly in unit order."""

    def __init__(self, ctx: MethodContext, writer: RunWriter, recipe: Recipe, concurrency: int,
                 progress: RunProgress) -> None:
        self.ctx, self.writer, self.recipe = ctx, writer, recipe
        self.concurrency, self.progress = concurrency, progress
        self.done: dict[int, tuple[Unit, list[Record] | Reject | Pending]] = {}
        self.next_to_commit = 0
        self.units = 0
        self.pending = 0

    def _full(self) -> bool:
        cap = self.recipe.limits.max_records
        return cap is not None and sum(self.writer.rows.values()) >= cap

    def _commit_ready(self) -> None:
        while self.next_to_commit in self.done and not self._full():
            unit, outcome = self.done.pop(self.next_to_commit)
            self.next_to_commit += 1
            if isinstance(outcome, Pending):
                self.pending += 1
            elif isinstance(outcome, Reject):
                self.writer.write_reject(unit.key(), outcome.reason, outcome.detail, outcome.raw,
                                         outcome.request_hash)
            else:
                for record in outcome:
                    if self._full():
                        break
                    self.writer.write_row(record.kind, record.to_row(), unit.key())
            self.progress.update(self.writer, self.units)

    async def run(self, units: Iterator[Unit]) -> None:
        """Drain `units`, keeping at most `concurrency` in flight, until done or max_records is reached."""
        pending: set[asyncio.Task] = set()
        exhausted = False
        try:
            while not self._full():
                while not exhausted and len(pending) < self.concurrency:
                    unit = next(units, None)
                    if unit is None:
                        exhausted = True
                    elif unit.skip is not None:
                        self.done[unit.index] = (unit, unit.skip)
                        self._commit_ready()
                    else:
                        self.units += 1
                        pending.add(asyncio.create_task(self._run_one(unit)))
                if not pending:
                    self._commit_ready()
                    break
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    task.result()  # a bug in a method surfaces here instead of vanishing
                self._commit_ready()
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run_one(self, unit: Unit) -> None:
        assert unit.method is not None
        self.done[unit.index] = (unit, await run_unit(unit, self.ctx, self.recipe.seed))


async def run_recipe(recipe: Recipe, backend: Backend | None = None, show_progress: bool = True,
                     batch_out: Path | None = None) -> RunSummary:
    """Run a whole recipe and write its outputs; returns counts and the manifest.

    With `batch_out`, uncached requests are written there as an OpenAI batch file instead of being sent.
    """
    methods = [create_method(spec, i) for i, spec in enumerate(recipe.methods)]
    run_dir = prepare_run_dir(recipe)
    started = time.time()
    backend = backend or create_backend(recipe.backend)
    if batch_out is not None:
        if not recipe.cache.enabled:
            raise ConfigError("--batch-out needs the request cache (cache.enabled: true): results come back through it")
        backend = BatchBackend(backend, recipe.backend)
    cache = RequestCache(recipe.cache_path()) if recipe.cache.enabled else None
    try:
        await backend.start()
        backend_ready = time.time()
        counters = RunCounters()
        ctx = MethodContext(backend, recipe.templates, counters, cache)
        writer = RunWriter(run_dir)
        stats = {"documents_read": 0, "documents_truncated": 0, "document_tokens": 0}
        docs = fitted_documents(recipe, backend, document_token_limit(recipe, backend, methods), stats)
        concurrency = min(recipe.limits.max_in_flight, backend.max_concurrency)
        with RunProgress(counters, stats, enabled=show_progress) as progress:
            runner = UnitRunner(ctx, writer, recipe, concurrency, progress)
            await runner.run(plan_units(docs, methods))
        files = writer.close()
        batch_requests = backend.write(batch_out) if isinstance(backend, BatchBackend) and batch_out else 0
    finally:
        await backend.aclose()
        if cache is not None:
            cache.close()
    generating = time.time() - backend_ready
    manifest = build_manifest(recipe, backend.model_id, stats, counters, runner.units, writer, files)
    manifest["counts"]["pending"] = runner.pending
    write_json(run_dir / "manifest.json", manifest)
    write_json(run_dir / "timings.json", {
        "wall_seconds": round(time.time() - started, 3),
        "backend_start_seconds": round(backend_ready - started, 3),
        "cache_hits": counters.cache_hits,
        "retries": getattr(backend, "retries", 0),
        "generation_seconds": round(generating, 3),
        "requests_per_second": round(counters.requests / generating, 3) if generating else None,
        "completion_tokens_per_second": round(counters.completion_tokens / generating, 1) if generating else None,
    })
    return RunSummary(run_dir, dict(writer.rows), dict(writer.rejects), manifest, runner.pending, batch_requests)


def dumps_summary(summary: RunSummary) -> str:
    """A short JSON summary for scripts."""
    return json.dumps({"run_dir": str(summary.run_dir), "rows": summary.rows, "rejects": summary.rejects})
