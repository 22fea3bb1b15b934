"""Runs a recipe on a Ray cluster: units planned on the driver's node, run by replicas, committed here in order.

The plan is a Ray Data source read by one streaming task with lcsynth's own readers and fitting, so documents,
ids and unit numbers are the local executor's. `map_batches` hands batches of units to a fixed pool of
replicas (actors), each owning a backend and running the methods' own code; the driver receives outcomes
and commits them through the local executor's `UnitRunner`, so files, checkpoints and resume are the same.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcsynth.backends.base import Backend, create_planning_backend
from lcsynth.backends.cache import RequestCache, merge_worker_caches
from lcsynth.config import Recipe
from lcsynth.corpus.documents import document_stats
from lcsynth.counters import RunCounters
from lcsynth.errors import ConfigError, MissingExtra, Reject
from lcsynth.methods.base import Method
from lcsynth.out.sink import RunWriter
from lcsynth.run.local import RunSummary, check_corpus_was_read, finish_run, rates
from lcsynth.run.plan import method_context, unit_total
from lcsynth.run.progress import RunProgress
from lcsynth.run.resume import RunStart, guarded_run
from lcsynth.run.runner import UnitRunner
from lcsynth.run.units import NO_UNIT, decode_error, decode_outcome

if TYPE_CHECKING:
    from lcsynth.run.ray_stages import WorkerSetup

# Ray Data cuts blocks at about this size: at one byte every unit is a block of its own, so blocks stream out of
# the planner at once and `map_batches` bundles exactly `units_per_batch` consecutive units per call, spreading
# even a short plan over every replica (larger blocks went whole to one replica).
BLOCK_BYTES = 1
FORWARDED_ENV = ("OPENAI_API_KEY", "HF_TOKEN")
REPLICA_EXIT_SECONDS = 90.0  # a finished pool's replicas close their backends and caches, then exit


@dataclass(frozen=True)
class RayOptions:
    """How a run uses Ray: where the cluster is, and the replicas that run units."""

    address: str | None = None  # None: this process's Ray connection, or a new local instance
    num_replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    units_per_batch: int = 8  # at most; never more than a replica keeps in flight

    def __post_init__(self) -> None:
        if self.num_replicas < 1:
            raise ConfigError("--num-replicas: give at least 1")
        if self.units_per_batch < 1:
            raise ConfigError("units_per_batch: give at least 1")
        if self.gpus_per_replica < 0 or self.cpus_per_replica < 0:
            raise ConfigError("--gpus-per-replica and --cpus-per-replica cannot be negative")


def import_ray() -> Any:
    """The `ray` module, or a one-line error naming the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the executor needs Ray Data, not only Ray core
    except ImportError:
        raise MissingExtra("ray", "ray", "--executor ray") from None
    return ray


def run_recipe_on_ray(recipe: Recipe, options: RayOptions | None = None, show_progress: bool = True,
                      retry_reasons: list[str] | None = None) -> RunSummary:
    """Run a whole recipe on Ray and write its outputs as the local executor would; returns the same summary.

    Connects to `options.address` unless this process is connected already (a Ray instance the caller
    started is used as it is, and left running).
    """
    options = options or RayOptions()
    ray = import_ray()
    with guarded_run(recipe, None, retry_reasons) as start:
        connect_here = not ray.is_initialized()
        if connect_here:
            ray.init(address=options.address, logging_level=logging.WARNING)
        try:
            return _run(ray, recipe, start, options, show_progress)
        finally:
            if connect_here:
                ray.shutdown()


def _run(ray: Any, recipe: Recipe, start: RunStart, options: RayOptions, show_progress: bool) -> RunSummary:
    backend = create_planning_backend(recipe.backend)
    cache_path = open_main_cache(recipe)
    counters = RunCounters()
    ctx = method_context(recipe, backend, start.methods, counters)  # builds the token store once, here
    setup = worker_setup(recipe, start, backend, ctx.store.folder if ctx.store else None, cache_path)
    writer = RunWriter(start.run_dir, recipe.output.shard_rows, start.state["writer"] if start.state else None)
    if any(type(m).prepare is not Method.prepare for m in start.methods):
        for key, reject in prepare_once(ray, recipe, setup, options):
            writer.write_reject(key, reject.reason, reject.detail, reject.raw, reject.request_hash)
    stats = document_stats()
    concurrency = min(recipe.limits.max_in_flight, backend.max_concurrency)
    started = time.time()
    total = unit_total(recipe, start.methods)
    with RunProgress(counters, stats, show_progress, total, recipe.backend.price) as progress, quiet_ray_data():
        runner = UnitRunner(ctx, writer, recipe, concurrency * options.num_replicas, progress, start.state)
        runner.attempts = start.attempts
        batches = outcome_batches(ray, recipe, setup, options, concurrency, runner.next_to_commit, start.attempts)
        commit_outcomes(batches, runner, stats, counters, start.methods)
    check_corpus_was_read(recipe, stats, runner)
    runner.checkpoint(final=True)
    files = writer.close()
    timings = {"backend_start_seconds": round(started - start.started, 3), "cache_hits": counters.cache_hits,
               **rates(counters, time.time() - started), "cache_entries_merged": merge_caches(cache_path),
               "executor": {"type": "ray", **asdict(options)}}
    return finish_run(start, recipe, backend.model_id, stats, runner, writer, files, timings)


def worker_setup(recipe: Recipe, start: RunStart, backend: Backend, store: Path | None,
                 cache_path: Path | None) -> WorkerSetup:
    """What replicas and the planner must agree on with this driver, as absolute paths."""
    from lcsynth.run.ray_stages import WorkerSetup

    return WorkerSetup(os.getcwd(), str(start.run_dir.resolve()), str(store.resolve()) if store else None,
                       str(cache_path) if cache_path else None, backend.model_id, backend.context_length,
                       forwarded_env(recipe))


@contextmanager
def quiet_ray_data() -> Iterator[None]:
    """Keep Ray Data's progress notices (execution started and finished, no progress bars) off the console.

    Its log file under the Ray session folder still gets them.
    """
    consoles = [h for h in logging.getLogger("ray.data").handlers if isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler) and getattr(h, "stream", None) is sys.stderr]

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO and not record.getMessage().startswith("Progress bars disabled")

    for handler in consoles:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(keep)


def open_main_cache(recipe: Recipe) -> Path | None:
    """Merge what a killed run's replicas kept, and fold the log into the file that replicas read as a snapshot."""
    if not recipe.cache.enabled:
        return None
    cache = RequestCache(recipe.cache_path())
    try:
        merge_worker_caches(cache)
        cache.checkpoint()
    finally:
        cache.close()
    return recipe.cache_path().resolve()


def merge_caches(cache_path: Path | None) -> int:
    """Merge the replicas' worker caches into the main cache; return the entries added."""
    if cache_path is None:
        return 0
    cache = RequestCache(cache_path)
    try:
        return merge_worker_caches(cache, wait_seconds=REPLICA_EXIT_SECONDS)
    finally:
        cache.close()


def forwarded_env(recipe: Recipe) -> dict[str, str]:
    """Variables replicas need as the driver has them: LCSYNTH_* settings and the backend's API key variable.

    They travel with the replicas' constructor arguments, in memory; nothing writes them anywhere.
    """
    names = {*(n for n in os.environ if n.startswith("LCSYNTH_")), *FORWARDED_ENV}
    if recipe.backend.api_key_env:
        names.add(recipe.backend.api_key_env)
    return {name: os.environ[name] for name in sorted(names) if name in os.environ}


def prepare_once(ray: Any, recipe: Recipe, setup: WorkerSetup,
                 options: RayOptions) -> list[tuple[dict[str, Any], Reject]]:
    """Run the methods' run-level `prepare` (e.g. WildLong's graph) once, in one replica, before the pool starts.

    What it saves in the run folder, the pool's replicas then load instead of making again.
    """
    from lcsynth.run.ray_stages import UnitWorker

    lead = ray.remote(UnitWorker).options(num_cpus=options.cpus_per_replica,
                                          num_gpus=options.gpus_per_replica).remote(recipe, setup)
    try:
        found, error = ray.get(lead.prepared.remote())
        ray.get(lead.close.remote())
    finally:
        ray.kill(lead)
    if error:
        raise decode_error(error)
    rejects = []
    for key, (reason, detail, raw, request_hash) in found:
        reject = Reject(reason, detail, raw)
        reject.request_hash = request_hash
        rejects.append((key, reject))
    return rejects


def outcome_batches(ray: Any, recipe: Recipe, setup: WorkerSetup, options: RayOptions, concurrency: int,
                    first_unit: int, attempts: dict[str, int]) -> Iterator[Any]:
    """The Ray Data pipeline: planned units (from `first_unit`) → replicas → outcomes, in unit order."""
    from ray.data import ActorPoolStrategy

    from lcsynth.run.ray_stages import PlannedUnits, UnitWorker

    batch = max(1, min(options.units_per_batch, concurrency))
    units = ray.data.read_datasource(PlannedUnits(recipe, setup, first_unit, attempts), override_num_blocks=1,
                                     num_cpus=0, label_selector=driver_node(ray))
    context = units.context
    context.target_max_block_size = BLOCK_BYTES
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    pool = ActorPoolStrategy(size=options.num_replicas, max_concurrent_calls_per_actor=-(-concurrency // batch))
    outcomes = units.map_batches(UnitWorker, fn_constructor_args=(recipe, setup), batch_size=batch,
                                 batch_format="pyarrow", compute=pool, num_cpus=options.cpus_per_replica,
                                 num_gpus=options.gpus_per_replica or None)
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")  # a short plan is fine
    return outcomes.iter_batches(batch_size=None, batch_format="pyarrow")


def driver_node(ray: Any) -> dict[str, str] | None:
    """A label selector for this node, where the corpus and the token store are (None under Ray Client)."""
    try:
        return {"ray.io/node-id": ray.get_runtime_context().get_node_id()}
    except Exception:  # noqa: BLE001 - Ray Client has no node of its own
        return None


def commit_outcomes(batches: Iterator[Any], runner: UnitRunner, stats: dict[str, int], counters: RunCounters,
                    methods: list[Method]) -> None:
    """Commit outcomes as they arrive (in unit order), until the plan ends or max_records is reached."""
    try:
        for batch in batches:
            for row in batch.to_pylist():
                if row["error"]:
                    raise decode_error(row["error"])
                for key in stats:
                    stats[key] += row[key]
                if row["index"] == NO_UNIT:
                    continue
                unit, outcome, usage = decode_outcome(row["outcome"], methods)
                if usage is not None:
                    counters.add(usage)
                runner.accept(unit, outcome, usage)
            if runner.is_full():
                return
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the pipeline (and its replicas) early
