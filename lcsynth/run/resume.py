"""Resume and retry: how a rerun of the same recipe picks up where the last one stopped.

A killed run resumes in five places, all keyed by the checkpoint this module reads:
- `runner.UnitRunner.checkpoint` writes `checkpoint.json` about once a second (the next unit to commit, the
  writer's fsynced file lengths, counts and committed usage), after flushing the request cache;
- `read_checkpoint` here finds it on the next run of the same recipe (same `recipe_hash`) and hands it over;
- `out.sink.RunWriter` truncates its `.partial` files to the checkpoint and takes back or drops shards;
- the runner skips committed units, replays the written rows into the filters (`RowFilter.observe`) and
  runs the rest again, their earlier requests answered by `backends.cache.RequestCache`;
- `Method.prepare` runs again and picks up what it saved in the run folder.
`--retry-rejects` is the other way to run a recipe again: rejected units get a new attempt number
(`attempts.json`), which salts their seeds; every other unit replays from the cache.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcsynth.config import Recipe
from lcsynth.errors import ConfigError, OutputError
from lcsynth.methods.base import Method, create_method
from lcsynth.out import runfolder
from lcsynth.out.filters import create_filters
from lcsynth.out.manifest import write_json
from lcsynth.redaction import watch_variable

CHECKPOINT = runfolder.CHECKPOINT


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
