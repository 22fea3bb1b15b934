"""JSON Schemas for LLM outputs and dataset rows, with readable validation errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from lcsynth.errors import ConfigError
from lcsynth.paths import data_dir
from lcsynth.prompts.fastcheck import PATTERN_SECONDS, Check, compile_check, search_bounded


def _bounded_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    """The `pattern` keyword, matched with a time limit (see `search_bounded`); too slow a match fails validation."""
    if not validator.is_type(instance, "string"):
        return
    matched = search_bounded(pattern, instance)
    if matched is None:
        yield ValidationError(f"matching {pattern!r} took over {PATTERN_SECONDS:g} s (the pattern backtracks "
                              "too much for this value)")
    elif not matched:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


SchemaValidator = validators.extend(Draft202012Validator, {"pattern": _bounded_pattern})


@cache
def load_schema(name_or_path: str) -> dict[str, Any]:
    """Load a schema by built-in name (`sft`, `sft.json`) or by file path; check it is a valid schema."""
    path = Path(name_or_path)
    if not path.exists():
        stem = name_or_path if name_or_path.endswith(".json") else f"{name_or_path}.json"
        path = data_dir("schemas") / stem
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"schema '{name_or_path}' not found (looked in {data_dir('schemas')})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: schema is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ConfigError(f"{path}: the schema nests too deeply to be read; flatten it") from None
    check_schema(schema, str(path))
    return schema


def check_schema(schema: Any, where: str) -> None:
    """Raise a one-line ConfigError unless `schema` is itself a valid JSON Schema (2020-12) that can be used.

    Schemas nested too deeply to check, and `$ref`s that lead back to themselves, are refused here rather than
    failing on the first output.
    """
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        at = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ConfigError(f"{where}: not a valid JSON Schema at {at}: {exc.message}") from None
    except RecursionError:
        raise ConfigError(f"{where}: the schema nests too deeply to be checked; flatten it") from None
    try:
        SchemaValidator(schema).is_valid(None)
    except RecursionError:
        raise ConfigError(f"{where}: the schema's $ref leads back to itself without end") from None
    except Exception as exc:  # noqa: BLE001 - jsonschema raises several types for references it cannot resolve
        raise ConfigError(f"{where}: the schema cannot be used ({type(exc).__name__}: {exc})") from None


Validators = tuple[Draft202012Validator, Check | None]


@cache
def _validator(name_or_path: str) -> Validators:
    schema = load_schema(name_or_path)
    return SchemaValidator(schema), compile_check(schema)


_inline_validators: dict[int, tuple[dict[str, Any], Validators]] = {}


def _inline_validator(schema: dict[str, Any]) -> Validators:
    """Validators per schema object, reused while that object lives (templates keep theirs)."""
    entry = _inline_validators.get(id(schema))
    if entry is None or entry[0] is not schema:
        if len(_inline_validators) > 256:
            _inline_validators.clear()
        entry = _inline_validators[id(schema)] = (schema, (SchemaValidator(schema), compile_check(schema)))
    return entry[1]


def validation_error(instance: Any, schema: str | dict[str, Any]) -> str | None:
    """Return None if `instance` is valid, else one line naming the failing path and rule.

    The compiled fast check accepts most valid instances on its own; jsonschema decides the rest.
    """
    validator, fast = _inline_validator(schema) if isinstance(schema, dict) else _validator(schema)
    try:
        if fast is not None and fast(instance):
            return None
        error = best_match(validator.iter_errors(instance))
    except RecursionError:
        return "(root): the value nests deeper than the schema can be checked (a $ref that recurses?)"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message[:300]}"
