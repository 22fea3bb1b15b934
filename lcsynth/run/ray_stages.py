"""The two stages of a Ray run: the unit plan as a streaming Ray Data source, and the replicas that run units.

Imported only when a run uses Ray: it needs `ray[data]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from lcsynth.backends.base import Backend, create_backend
from lcsynth.backends.cache import RequestCache, worker_cache_dir
from lcsynth.config import Recipe
from lcsynth.counters import RunCounters
from lcsynth.errors import BackendError, InputError, LcsynthError
from lcsynth.methods.base import MethodContext, create_method
from lcsynth.out.filters import check_scoring, create_filters
from lcsynth.run.plan import method_context
from lcsynth.run.runner import run_unit
from lcsynth.run.units import NO_UNIT, decode_unit, encode_error, encode_outcome, planned_units

PLAN_COLUMNS = ("index", "unit", "documents_read", "documents_truncated", "document_tokens")
PLAN_CHUNK = 16  # units per table the planner hands to Ray Data (which regroups them into blocks by size)
CLOSE_SECONDS = 60.0  # for a replica's backend to shut down (a vLLM engine takes a while)


@dataclass(frozen=True)
class WorkerSetup:
    """What the driver settled that every replica (and the planner) must agree on."""

    cwd: str  # recipes name paths relative to where the command ran; every node must mount it at the same path
    run_dir: str
    store: str | None  # the corpus token store the driver built, if a method needs it
    cache: str | None  # the main request cache, read as a snapshot; replicas write worker caches beside it
    model_id: str
    context_length: int
    env: dict[str, str] = field(default_factory=dict)  # LCSYNTH_* settings and the backend's API key variable


def enter_cwd(cwd: str) -> None:
    """Work from the driver's folder, so relative paths in the recipe mean what they meant there."""
    if not Path(cwd).is_dir():
        raise InputError(f"{cwd}: this Ray node has no such folder; run from a folder every node mounts at the "
                         "same path (a shared file system)")
    os.chdir(cwd)


class PlannedUnits(Datasource):
    """The run's units from `first_unit` on, planned in one streaming read task on the driver's node."""

    def __init__(self, recipe: Recipe, setup: WorkerSetup, first_unit: int, attempts: dict[str, int]) -> None:
        self.recipe, self.setup, self.first_unit, self.attempts = recipe, setup, first_unit, attempts

    def estimate_inmemory_data_size(self) -> int | None:
        """Unknown: the plan streams."""
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        """One task: unit numbers follow the corpus order, so a single reader numbers them."""
        metadata = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
        return [ReadTask(self.tables, metadata)]

    def tables(self) -> Iterator[pa.Table]:
        """The plan as Arrow tables of `PLAN_CHUNK` units."""
        before = os.getcwd()
        enter_cwd(self.setup.cwd)
        try:
            store = Path(self.setup.store) if self.setup.store else None
            chunk: list[tuple[Any, ...]] = []
            for index, unit, counts in planned_units(self.recipe, store, self.first_unit, self.attempts):
                chunk.append((index, unit, *counts.values()))
                if len(chunk) >= PLAN_CHUNK:
                    yield plan_table(chunk)
                    chunk = []
            if chunk:
                yield plan_table(chunk)
        finally:
            os.chdir(before)  # the task's worker process runs other tasks afterwards


def plan_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    """Rows of `PLAN_COLUMNS` as an Arrow table."""
    return pa.Table.from_pylist([dict(zip(PLAN_COLUMNS, row, strict=True)) for row in rows])


class UnitWorker:
    """One replica: its own backend, method instances and worker cache; runs the units of the batches it gets.

    Batches run concurrently on the replica's event loop (Ray Data calls `__call__` for several at once); a
    semaphore keeps the units in flight within `min(limits.max_in_flight, backend.max_concurrency)`, as locally.
    """

    def __init__(self, recipe: Recipe, setup: WorkerSetup) -> None:
        enter_cwd(setup.cwd)
        os.environ.update(setup.env)
        self.recipe, self.setup = recipe, setup
        self.methods = [create_method(spec, i) for i, spec in enumerate(recipe.methods)]
        self.filters = create_filters(recipe.filters)
        self.prepare_rejects: list[tuple[dict[str, Any], Any]] = []
        self._started: asyncio.Future[MethodContext] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    async def context(self) -> MethodContext:
        """The replica's method context, built on first use (concurrent first calls share one start)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        return await self._started

    async def _start(self) -> MethodContext:
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.current_thread()
        backend = create_backend(self.recipe.backend)
        try:
            return await self._prepare(backend)
        except BaseException:
            await backend.aclose()  # a vLLM engine would otherwise hold its GPUs until the process ends
            raise

    async def _prepare(self, backend: Backend) -> MethodContext:
        check_scoring(self.recipe.filters, backend)
        await backend.start()
        if (backend.model_id, backend.context_length) != (self.setup.model_id, self.setup.context_length):
            raise BackendError(f"a replica runs {backend.model_id} with a {backend.context_length}-token context, "
                               f"but the run was planned for {self.setup.model_id} with {self.setup.context_length}; "
                               "set backend.context_length")
        store = Path(self.setup.store) if self.setup.store else None
        ctx = method_context(self.recipe, backend, self.methods, RunCounters(), self.worker_cache(), store)
        for method in self.methods:  # what a method prepared once for the run, it now loads from the run folder
            self.prepare_rejects += await method.prepare(ctx, Path(self.setup.run_dir))
        for method in self.methods:
            method.sources(ctx)  # methods with their own items (QA pairs) keep what their units draw decoys from
        self._slots = asyncio.Semaphore(min(self.recipe.limits.max_in_flight, backend.max_concurrency))
        return ctx

    def worker_cache(self) -> RequestCache | None:
        """The replica's own cache file, falling back to a snapshot of the main cache."""
        if self.setup.cache is None:
            return None
        import ray

        main = Path(self.setup.cache)
        snapshot = RequestCache(main, "snapshot") if main.exists() else None
        own = worker_cache_dir(main) / f"worker-{ray.get_runtime_context().get_actor_id()}.sqlite"
        return RequestCache(own, "exclusive", fallback=snapshot)

    async def __call__(self, batch: pa.Table) -> dict[str, list[Any]]:
        """Run a batch of planned units; the reply has one row per unit (an error row if the replica cannot run)."""
        rows = batch.to_pylist()
        try:
            ctx = await self.context()
            outcomes = await asyncio.gather(*(self._run(ctx, row) for row in rows))
        except LcsynthError as exc:
            return {"index": [NO_UNIT], "outcome": [""], "error": [encode_error(exc)],
                    **{key: [0] for key in PLAN_COLUMNS[2:]}}
        return {"index": [row["index"] for row in rows], "outcome": outcomes, "error": [""] * len(rows),
                **{key: [row[key] for row in rows] for key in PLAN_COLUMNS[2:]}}

    async def _run(self, ctx: MethodContext, row: dict[str, Any]) -> str:
        if row["index"] == NO_UNIT:
            return ""
        unit, attempt = decode_unit(row["unit"], self.methods)
        if unit.skip is not None:
            return encode_outcome(unit, self.methods, unit.skip, None)
        assert self._slots is not None
        async with self._slots:
            _, outcome, usage = await run_unit(unit, ctx, self.recipe.seed, attempt, self.filters)
        return encode_outcome(unit, self.methods, outcome, usage)

    async def prepared(self) -> tuple[list[tuple[dict[str, Any], list[Any]]], str]:
        """Start (running every method's `prepare`) and return its rejects, or the error that stopped it."""
        try:
            await self.context()
        except LcsynthError as exc:
            return [], encode_error(exc)
        return [(key, [r.reason, r.detail, r.raw, r.request_hash]) for key, r in self.prepare_rejects], ""

    async def close(self) -> None:
        """Release the backend and the worker cache (whose lock tells the driver the replica still runs)."""
        started, self._started = self._started, None
        if started is not None and started.done() and not started.exception():
            ctx = started.result()
            await ctx.backend.aclose()
            if ctx.cache is not None:
                ctx.cache.close()

    def __del__(self) -> None:
        # Ray Data drops a finished pool's replicas gracefully, which ends here, outside the replica's event loop.
        # At interpreter exit the loop's thread no longer runs, and a failed start left nothing to close.
        loop, started = getattr(self, "_loop", None), getattr(self, "_started", None)  # absent on `ray.remote`'s class
        if (loop is None or started is None or not started.done() or started.cancelled() or started.exception()
                or sys.is_finalizing() or not loop.is_running() or threading.current_thread() is self._loop_thread):
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.close(), loop).result(CLOSE_SECONDS)
