"""The ordered runner: units run concurrently, their outcomes committed strictly in unit order.

Each unit runs in its own fork of the method context; filters measure its records there, and check and
observe them at commit. Checkpoints are taken from here (see `run.resume` for how a rerun uses them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from lcsynth.config import Recipe
from lcsynth.counters import RunCounters
from lcsynth.errors import BackendError, Pending, Reject
from lcsynth.methods.base import MethodContext, Record, unit_rng
from lcsynth.out.filters import RowFilter, create_filters
from lcsynth.out.manifest import write_json
from lcsynth.out.sink import RunWriter, dump_line
from lcsynth.out.timeline import Timeline
from lcsynth.run.garbage import collect_garbage_now, collected_at_checkpoints
from lcsynth.run.plan import Unit
from lcsynth.run.progress import RunProgress
from lcsynth.run.resume import CHECKPOINT, recipe_hash, unit_id
from lcsynth.version import __version__


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
