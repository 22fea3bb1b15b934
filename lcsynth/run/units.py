"""The unit plan and unit outcomes as JSON text, so units can run in other processes and come back to commit.

Rows keep their exact bytes through the trip: they hold only JSON values, and `json` gives back the same
values (floats included) in the same key order, which `sink.dump_line` then writes as it would have.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lcsynth import errors
from lcsynth.backends.base import create_planning_backend
from lcsynth.config import Recipe
from lcsynth.corpus.documents import counted_documents, document_stats, fitted_documents
from lcsynth.corpus.readers import Document
from lcsynth.counters import RunCounters
from lcsynth.errors import LcsynthError, Reject
from lcsynth.methods.base import Method, Record, create_method
from lcsynth.run.plan import Unit, method_context, plan_units
from lcsynth.run.resume import unit_id
from lcsynth.run.runner import Outcome

NO_UNIT = -1  # the index of a plan row that carries only document counts


def encode_unit(unit: Unit, methods: list[Method], attempt: int = 0) -> str:
    """A planned unit (its document fitted already) and its attempt number as JSON."""
    skip = [unit.skip.reason, unit.skip.detail] if unit.skip is not None else None
    return json.dumps({"index": unit.index, "method": position(unit.method, methods), "sample": unit.sample,
                       "doc": [unit.doc.id, unit.doc.text, unit.doc.meta], "attempt": attempt, "skip": skip},
                      ensure_ascii=False)


def decode_unit(text: str, methods: list[Method]) -> tuple[Unit, int]:
    """The unit and attempt number `encode_unit` wrote, bound to this process's method instances."""
    data = json.loads(text)
    skip = Reject(*data["skip"]) if data["skip"] else None
    method = methods[data["method"]] if data["method"] is not None else None
    return Unit(data["index"], method, Document(*data["doc"]), data["sample"], skip), data["attempt"]


def position(method: Method | None, methods: list[Method]) -> int | None:
    """Where a method stands in the recipe (the same in every process), or None for a skipped document."""
    return None if method is None else next(i for i, m in enumerate(methods) if m is method)


def encode_outcome(unit: Unit, methods: list[Method], outcome: Outcome, usage: RunCounters | None) -> str:
    """What a unit produced, with what committing it needs to know of the unit."""
    data: dict[str, Any] = {"index": unit.index, "method": position(unit.method, methods), "doc_id": unit.doc.id,
                            "sample": unit.sample, "spans": unit.doc.meta.get("token_spans"),
                            "usage": asdict(usage) if usage is not None else None}
    if isinstance(outcome, Reject):
        data["reject"] = [outcome.reason, outcome.detail, outcome.raw, outcome.request_hash]
    elif isinstance(outcome, list):
        data["records"] = [[r.kind, r.row, r.meta] for r in outcome]
    else:
        raise TypeError(f"a {type(outcome).__name__} cannot leave a replica (batch rounds run locally)")
    return json.dumps(data, ensure_ascii=False)


def decode_outcome(text: str, methods: list[Method]) -> tuple[Unit, Outcome, RunCounters | None]:
    """The unit (as much of it as committing reads), its outcome and its usage counts."""
    data = json.loads(text)
    method = methods[data["method"]] if data["method"] is not None else None
    unit = Unit(data["index"], method, Document(data["doc_id"], "", {"token_spans": data["spans"]}), data["sample"])
    outcome: Outcome
    if "reject" in data:
        reason, detail, raw, request_hash = data["reject"]
        outcome = Reject(reason, detail, raw)
        outcome.request_hash = request_hash
    else:
        outcome = [Record(kind, row, meta) for kind, row, meta in data["records"]]
    usage = RunCounters(**data["usage"]) if data["usage"] is not None else None
    return unit, outcome, usage


def encode_error(exc: LcsynthError) -> str:
    """A user-facing error of a replica, to be raised again, as one line, by the process that commits."""
    return json.dumps([type(exc).__name__, str(exc)])


def decode_error(text: str) -> LcsynthError:
    """The error `encode_error` wrote, as an instance of the same lcsynth error class."""
    name, message = json.loads(text)
    cls = getattr(errors, name, LcsynthError)
    if not (isinstance(cls, type) and issubclass(cls, LcsynthError)):
        cls = LcsynthError
    error = cls.__new__(cls)  # some classes build their message from other arguments; keep the message as sent
    Exception.__init__(error, message)
    return error


def planned_units(recipe: Recipe, store_folder: Path | None, first_unit: int,
                  attempts: dict[str, int]) -> Iterator[tuple[int, str, dict[str, int]]]:
    """(index, encoded unit, document counts since the previous one) for every unit from `first_unit` on.

    This is the local executor's plan, made the same way: lcsynth's corpus readers, the backend's tokenizer
    for fitting, the token store opened from `store_folder`. Counts of documents whose units were committed
    before a resume ride on the next unit, or on a last `NO_UNIT` row.
    """
    backend = create_planning_backend(recipe.backend)
    methods = [create_method(spec, i) for i, spec in enumerate(recipe.methods)]
    ctx = method_context(recipe, backend, methods, RunCounters(), store_folder=store_folder)
    stats, reported = document_stats(), document_stats()

    def counts_since() -> dict[str, int]:
        delta = {key: stats[key] - reported[key] for key in stats}
        reported.update(stats)
        return delta

    docs = counted_documents(fitted_documents(recipe, backend.tokenizer, ctx.document_limit or 0, ctx.store), stats)
    for unit in plan_units(docs, methods, ctx):
        if unit.index >= first_unit:
            yield unit.index, encode_unit(unit, methods, attempts.get(unit_id(unit.key()), 0)), counts_since()
    rest = counts_since()
    if any(rest.values()):
        yield NO_UNIT, "", rest
