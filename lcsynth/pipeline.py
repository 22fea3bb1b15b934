"""Runs a recipe: streams documents, fits them to the context, runs methods, writes rows in a fixed order."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lcsynth import __version__, runfolder
from lcsynth.backends.base import Backend, create_backend
from lcsynth.batch import BatchBackend
from lcsynth.cache import RequestCache, merge_worker_caches
from lcsynth.config import Recipe
from lcsynth.corpus import Document, iter_documents
from lcsynth.documents import (
    EARLY_WORKERS_BYTES,
    corpus_bytes,
    counted_documents,
    document_stats,
    document_token_limit,
    fitted_documents,
)
from lcsynth.errors import BackendError, ConfigError, InputError, OutputError, Pending, Reject
from lcsynth.filters import RowFilter, check_scoring, create_filters
from lcsynth.fitting import Fitter
from lcsynth.garbage import collect_garbage_now, collected_at_checkpoints
from lcsynth.manifest import build_manifest, write_json
from lcsynth.methods.base import Method, MethodContext, Record, RunCounters, create_method, unit_rng
from lcsynth.progress import RunProgress
from lcsynth.redaction import watch_variable
from lcsynth.report import write_report
from lcsynth.sink import RunWriter, dump_line
from lcsynth.store import TokenStore
from lcsynth.timeline import Timeline
from lcsynth.tokens import Tokenizer

CHECKPOINT = runfolder.CHECKPOINT


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
    timings: dict[str, Any]
    pending: int = 0
    batch_requests: int = 0


def recipe_hash(recipe: Recipe) -> str:
    """A hash of what in the recipe shapes the rows; not where they go, how fast, or through which URL."""
    data = recipe.model_dump(mode="json")
    backend = {k: data["backend"][k] for k in ("type", "model", "tokenizer", "context_length", "options",
                                                "structured_output")}
    shaping = {"seed": data["seed"], "corpus": data["corpus"], "backend": backend, "context": data["context"],
               "methods": data["methods"], "templates": data["templates"], "filters": data["filters"],
               "limits": {k: data["limits"][k] for k in ("max_documents", "max_records")}}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


def read_checkpoint(recipe: Recipe) -> dict[str, Any] | None:
    """The checkpoint of an unfinished run of this recipe under the same name, if there is one to resume."""
    run_dir = recipe.run_dir()
    path = run_dir / CHECKPOINT
    if not recipe.output.resume or not path.exists() or (run_dir / "manifest.json").exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # a checkpoint is replaced atomically, so this is not ours; start afresh
    if any(not (run_dir / f"{name}.partial").exists() and not (run_dir / name).exists()
           for name in state["writer"]["files"]):
        return None  # the files it vouches for are gone: nothing to resume, run again
    if state.get("recipe_hash") != recipe_hash(recipe):
        raise ConfigError(f"output: {run_dir} holds an unfinished run of a different recipe; "
                          "rerun with --fresh to discard it, or choose another output.name")
    return state


ATTEMPTS = "attempts.json"


def unit_id(key: dict[str, Any]) -> str:
    """A unit's identity as one string (method, document id, sample)."""
    return json.dumps([key["method"], key["doc_id"], key["sample"]])


def saved_attempts(run_dir: Path) -> dict[str, int]:
    """Attempt numbers of units an earlier --retry-rejects gave new seeds (empty when none)."""
    path = run_dir / ATTEMPTS
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def next_attempts(recipe: Recipe, reasons: list[str]) -> dict[str, int]:
    """Attempt numbers for a retry of a finished run: its rejected units (of `reasons`, or all) go up by one."""
    run_dir = recipe.run_dir()
    if not (run_dir / "manifest.json").exists():
        raise ConfigError(f"--retry-rejects: {run_dir} holds no finished run to retry")
    attempts = saved_attempts(run_dir)
    with (run_dir / "rejects.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            reject = json.loads(line)
            if reject["method"] is not None and (not reasons or reject["reason"] in reasons):
                key = unit_id(reject)
                attempts[key] = attempts.get(key, 0) + 1
    return attempts


def plan_units(docs: Iterator[tuple[Document, Reject | None]], methods: list[Method],
               ctx: MethodContext | None = None) -> Iterator[Unit]:
    """Every (method, document, sample), numbered in output order; a skipped document is one unit.

    Methods that bring their own documents (`Method.sources`, e.g. QA items) follow the corpus methods.
    """
    own = [m.sources(ctx) if ctx is not None else None for m in methods]
    on_corpus = [m for m, items in zip(methods, own, strict=True) if items is None]
    index = 0
    for doc, skip in docs if on_corpus else ():
        if skip is not None:  # the text is not needed to record why the document was skipped
            yield Unit(index, None, replace(doc, text=""), None, skip)
            index += 1
            continue
        for method in on_corpus:
            for sample in range(method.samples_per_document):
                yield Unit(index, method, doc, sample)
                index += 1
    for method, items in zip(methods, own, strict=True):
        for doc in items or ():
            for sample in range(method.samples_per_document):
                yield Unit(index, method, doc, sample)
                index += 1


def open_store(recipe: Recipe, tokenizer: Tokenizer) -> TokenStore:
    """The corpus token store for this recipe's corpus and tokenizer, built on first use under output.root."""
    corpus = recipe.corpus.model_dump(mode="json")
    if recipe.corpus.path and Path(recipe.corpus.path).exists():
        stat = Path(recipe.corpus.path).stat()
        corpus["stat"] = [stat.st_size, stat.st_mtime_ns]  # a changed corpus file gets a new store
    folder = Path(recipe.output.root) / "stores" / TokenStore.fingerprint(json.dumps(corpus, sort_keys=True), tokenizer)

    def usable() -> Iterator[Document]:
        return (d for d in iter_documents(recipe.corpus) if d.text.strip() and len(d.text) >= recipe.corpus.min_chars)

    return TokenStore.open_or_build(folder, usable, tokenizer)


async def run_unit(unit: Unit, ctx: MethodContext, seed: int, attempt: int = 0,
                   filters: list[RowFilter] = ()) -> tuple[Unit, Outcome, RunCounters | None]:
    """Run one unit, then let filters measure its records; a Reject or Pending is returned, not raised."""
    assert unit.method is not None and unit.sample is not None
    rng = unit_rng(seed, unit.method.name, unit.doc.id, unit.sample, attempt)
    unit_ctx = ctx.fork()
    outcome: Outcome
    try:
        outcome = await unit.method.run(unit.doc, unit.sample, unit_ctx, rng)
        for record in outcome:
            for row_filter in filters:
                await row_filter.annotate(record, unit_ctx)
    except Reject as reject:
        reject.request_hash = unit_ctx.last_request_hash
        outcome = reject
    except Pending as pending:
        outcome = pending
    return unit, outcome, unit_ctx.usage


Outcome = list[Record] | Reject | Pending


class UnitRunner:
    """Runs units with bounded concurrency and commits their outcomes strictly in unit order.

    Every `checkpoint_seconds` (and at the end) it records how far the committed output reaches, so a
    killed run resumes from there: units before the checkpoint are skipped, the rest run again (their
    earlier requests answered by the cache).
    """

    checkpoint_seconds = 1.0

    def __init__(self, ctx: MethodContext, writer: RunWriter, recipe: Recipe, concurrency: int,
                 progress: RunProgress, state: dict[str, Any] | None = None) -> None:
        self.ctx, self.writer, self.recipe = ctx, writer, recipe
        self.concurrency, self.progress = concurrency, progress
        self.done: dict[int, tuple[Unit, Outcome, RunCounters | None]] = {}
        state = state or {}
        self.next_to_commit = state.get("next_unit", 0)
        self.units = state.get("units", 0)
        self.pending = state.get("pending", 0)
        self.usage = RunCounters(**state.get("usage", {}))
        self.recipe_hash = recipe_hash(recipe)
        self.attempts: dict[str, int] = {}
        self.filters = create_filters(recipe.filters)
        if state:  # filters that compare rows must see the rows written before the interruption
            for kind, row in writer.iter_rows():
                for row_filter in self.filters:
                    row_filter.observe(kind, row)
        self._checkpointed = time.monotonic()
        self.timeline = Timeline(writer.run_dir, ctx.counters)
        self.failures_in_a_row = 0

    def _full(self) -> bool:
        cap = self.recipe.limits.max_records
        return cap is not None and sum(self.writer.rows.values()) >= cap

    def is_full(self) -> bool:
        """Whether `limits.max_records` rows are written (nothing more will be committed)."""
        return self._full()

    def accept(self, unit: Unit, outcome: Outcome, usage: RunCounters | None) -> None:
        """Take the outcome of a unit that ran elsewhere; it is committed once every earlier unit is."""
        self.done[unit.index] = (unit, outcome, usage)
        self._commit_ready()

    def checkpoint(self, final: bool = False) -> None:
        """Record the committed prefix of the output (atomically) so a killed run can resume after it."""
        state = {"recipe_hash": self.recipe_hash, "next_unit": self.next_to_commit, "units": self.units,
                 "pending": self.pending, "usage": asdict(self.usage) | {"in_flight": 0},
                 "writer": self.writer.snapshot()}
        if self.ctx.cache is not None:
            self.ctx.cache.flush()  # requests of units after the checkpoint are kept for the rerun
        collect_garbage_now()
        write_json(self.writer.run_dir / CHECKPOINT, state)
        self._checkpointed = time.monotonic()
        self.timeline.sample(sum(self.writer.rows.values()), sum(self.writer.rejects.values()), force=final)

    def _write_record(self, record: Record, unit: Unit) -> None:
        """Write a row unless a filter drops it; a dropped row is a reject naming the filter."""
        row = self._with_provenance(record, unit)
        for row_filter in self.filters:
            why = row_filter.check(record.kind, row, self.ctx.backend.tokenizer)
            if why is not None:
                self.writer.write_reject(unit.key(), f"filtered_{row_filter.label}", why, dump_line(row)[:4000])
                return
        if self.writer.write_row(record.kind, row, unit.key()):
            for row_filter in self.filters:
                row_filter.observe(record.kind, row)

    def _with_provenance(self, record: Record, unit: Unit) -> dict[str, Any]:
        """The row with what every row carries: source spans, lcsynth version, recipe hash."""
        record.meta.setdefault("source_spans", {unit.doc.id: unit.doc.meta.get("token_spans")})
        if self.attempts and self.attempts.get(unit_id(unit.key())):
            record.meta["attempt"] = self.attempts[unit_id(unit.key())]
        record.meta["lcsynth"] = __version__
        record.meta["recipe_hash"] = self.recipe_hash
        return record.to_row()

    def _commit_ready(self) -> None:
        while self.next_to_commit in self.done and not self._full():
            unit, outcome, usage = self.done.pop(self.next_to_commit)
            self.next_to_commit += 1
            if usage is not None:
                self.units += 1
                self.usage.add(usage)
            if isinstance(outcome, Pending):
                self.pending += 1
            elif isinstance(outcome, Reject):
                self.writer.write_reject(unit.key(), outcome.reason, outcome.detail, outcome.raw,
                                         outcome.request_hash)
            else:
                for record in outcome:
                    if self._full():
                        break
                    self._write_record(record, unit)
            self.progress.update(self.writer, self.units)
        if time.monotonic() - self._checkpointed >= self.checkpoint_seconds:
            self.checkpoint()

    async def run(self, units: Iterator[Unit]) -> None:
        """Drain `units`, keeping at most `concurrency` in flight, until done or max_records is reached.

        Finished tasks report through a callback (not `asyncio.wait` over every pending task, which costs
        time in proportion to the number in flight on each wake-up).
        """
        with collected_at_checkpoints():
            await self._run(units)

    async def _run(self, units: Iterator[Unit]) -> None:
        pending: set[asyncio.Task] = set()
        finished: list[asyncio.Task] = []
        woken = asyncio.Event()

        def on_done(task: asyncio.Task) -> None:
            finished.append(task)
            woken.set()

        exhausted = False
        try:
            while not self._full():
                while not exhausted and len(pending) < self.concurrency:
                    unit = next(units, None)
                    if unit is None:
                        exhausted = True
                    elif unit.index < self.next_to_commit:
                        continue  # committed before a resume
                    elif unit.skip is not None:
                        self.accept(unit, unit.skip, None)
                    else:
                        task = asyncio.create_task(self._run_one(unit))
                        task.add_done_callback(on_done)
                        pending.add(task)
                if not pending:
                    self._commit_ready()
                    break
                await woken.wait()
                woken.clear()
                batch, finished[:] = finished[:], []
                pending.difference_update(batch)
                errors = [t.exception() for t in batch if not t.cancelled() and t.exception() is not None]
                if errors:  # a bug in a method surfaces here instead of vanishing
                    raise errors[0]
                self._commit_ready()
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run_one(self, unit: Unit) -> None:
        attempt = self.attempts.get(unit_id(unit.key()), 0) if self.attempts else 0
        self.done[unit.index] = await run_unit(unit, self.ctx, self.recipe.seed, attempt, self.filters)
        self._watch_failures(self.done[unit.index][1])

    def _watch_failures(self, outcome: Outcome) -> None:
        """Stop the run when `limits.max_failures_in_a_row` units in a row failed after every retry.

        A dead endpoint would otherwise make every remaining unit wait out its retries. Nothing after the last
        checkpoint is kept, so a rerun continues from there.
        """
        failed = isinstance(outcome, Reject) and outcome.reason == "backend_error"
        self.failures_in_a_row = self.failures_in_a_row + 1 if failed else 0
        limit = self.recipe.limits.max_failures_in_a_row
        if limit is not None and self.failures_in_a_row >= limit:
            assert isinstance(outcome, Reject)
            raise BackendError(f"backend: {limit} units in a row failed after every retry (last: {outcome.detail}); "
                               "the endpoint looks down, so the run stops here; run the same command again to go on")


@dataclass
class RunStart:
    """What every executor settles before any model loads: methods, retry attempts, resume state, folder."""

    methods: list[Method]
    attempts: dict[str, int]
    state: dict[str, Any] | None
    run_dir: Path
    started: float


@contextmanager
def guarded_run(recipe: Recipe, batch_out: Path | None = None,
                retry_reasons: list[str] | None = None) -> Iterator[RunStart]:
    """Check methods and filters, lock the run folder, read attempts and the checkpoint, prepare the folder.

    The folder stays locked until the block ends; if the block fails, the finished run it was replacing
    comes back. An OSError (a full disk, a folder that cannot be written) becomes one line.
    """
    methods = [create_method(spec, i) for i, spec in enumerate(recipe.methods)]
    create_filters(recipe.filters)  # a mistake in a filter fails before the model loads
    watch_variable(recipe.backend.api_key_env)  # its value is kept out of rejects, manifests and messages
    run_dir = recipe.run_dir()
    try:
        with runfolder.hold(run_dir):
            retrying = retry_reasons is not None
            # read before the run folder may be cleared: a rerun keeps earlier retries
            attempts = next_attempts(recipe, retry_reasons or []) if retrying else saved_attempts(run_dir)
            state = read_checkpoint(recipe) if batch_out is None and not retrying else None
            try:  # from here the folder changes: a failure puts back the finished run it was replacing
                if not state:
                    runfolder.clear(run_dir, recipe.output.overwrite)
                if attempts:
                    write_json(run_dir / ATTEMPTS, attempts)
                yield RunStart(methods, attempts, state, run_dir, time.time())
            except Exception:
                runfolder.failed(run_dir)
                raise
            runfolder.finished(run_dir)
    except OSError as exc:
        raise OutputError(runfolder.describe_os_error(exc, run_dir)) from exc


def method_context(recipe: Recipe, backend: Backend, methods: list[Method], counters: RunCounters,
                   cache: RequestCache | None = None, store_folder: Path | None = None) -> MethodContext:
    """The context units run in: the backend, the corpus token store if a method needs it, the document limit.

    The store is opened from `store_folder` when given (built already), else opened or built for the recipe.
    """
    ctx = MethodContext(backend, recipe.templates, counters, cache)
    if any(m.needs_store for m in methods):
        ctx.store = TokenStore(store_folder) if store_folder else open_store(recipe, backend.tokenizer)
    ctx.document_limit = document_token_limit(recipe, backend, methods)
    ctx.seed = recipe.seed
    return ctx


def unit_total(recipe: Recipe, methods: list[Method]) -> int | None:
    """Units the progress bar expects, when the recipe caps the documents."""
    total = recipe.limits.max_documents and recipe.limits.max_documents * sum(m.samples_per_document
                                                                              for m in methods)
    return total or None


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
        docs = fitted_documents(recipe, backend, ctx.document_limit, ctx.store, fitter)
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
