"""JSON Schemas for LLM outputs and dataset rows, with readable validation errors."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from lcsynth.errors import ConfigError
from lcsynth.fastcheck import Check, compile_check
from lcsynth.paths import data_dir


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
    check_schema(schema, str(path))
    return schema


def check_schema(schema: Any, where: str) -> None:
    """Raise a one-line ConfigError unless `schema` is itself a valid JSON Schema (2020-12)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        at = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ConfigError(f"{where}: not a valid JSON Schema at {at}: {exc.message}") from None


Validators = tuple[Draft202012Validator, Check | None]


@cache
def _validator(name_or_path: str) -> Validators:
    schema = load_schema(name_or_path)
    return Draft202012Validator(schema), compile_check(schema)


_inline_validators: dict[int, tuple[dict[str, Any], Validators]] = {}


def _inline_validator(schema: dict[str, Any]) -> Validators:
    """Validators per schema object, reused while that object lives (templates keep theirs)."""
    entry = _inline_validators.get(id(schema))
    if entry is None or entry[0] is not schema:
        if len(_inline_validators) > 256:
            _inline_validators.clear()
        entry = _inline_validators[id(schema)] = (schema, (Draft202012Validator(schema), compile_check(schema)))
    return entry[1]


def validation_error(instance: Any, schema: str | dict[str, Any]) -> str | None:
    """Return None if `instance` is valid, else one line naming the failing path and rule.

    The compiled fast check accepts most valid instances on its own; jsonschema decides the rest.
    """
    validator, fast = _inline_validator(schema) if isinstance(schema, dict) else _validator(schema)
    if fast is not None and fast(instance):
        return None
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message[:300]}"
