"""A compiled fast path for JSON Schema validation: a predicate that says "certainly valid" in microseconds.

Validating every LLM output and every row with `jsonschema` costs tens of microseconds each, which adds up
at thousands of requests per second. `compile_check(schema)` turns the common subset of JSON Schema
(types, properties, required, additionalProperties, items, prefixItems, contains, lengths, bounds, pattern,
enum, const, allOf, anyOf, oneOf of distinct types, local $ref) into nested closures. The predicate is
conservative: True only when the instance is valid; anything it is unsure of (or any keyword outside the
subset, for which it returns no predicate at all) goes to `jsonschema`, which remains the judge and
writes the error message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import regex

Check = Callable[[Any], bool]

ANNOTATIONS = {"$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "default",
               "examples", "format", "deprecated", "readOnly", "writeOnly", "contentMediaType"}


# Model output is matched against a schema's patterns: one that backtracks without end must not stall the run.
PATTERN_SECONDS = 1.0


def search_bounded(pattern: str, text: str) -> bool | None:
    r"""Whether `pattern` matches somewhere in `text`; None when matching took over PATTERN_SECONDS.

    >>> search_bounded(r"\?$", "Why?"), search_bounded("^(a|a)+$", "a" * 40 + "!")
    (True, None)
    """
    compiled, bounded = _compiled(pattern)
    if not bounded:
        return compiled.search(text) is not None
    try:
        return compiled.search(text, timeout=PATTERN_SECONDS) is not None
    except TimeoutError:
        return None


# What lets a pattern backtrack without end: a quantified group (`(a|a)+`), a backreference, or several
# unbounded repeats (`\d+\d+x`). A pattern with none of them (`\?\s*$`) is searched without the time limit,
# whose clock costs more than such a search; counting every unescaped `*`, `+` and `,}` errs on the safe side.
QUANTIFIED_GROUP = re.compile(r"\)[*+?{]|\\[1-9]|\(\?P=|\\g<|\\k<")
UNBOUNDED = re.compile(r"(?<!\\)[*+]|,\}")


def needs_time_limit(pattern: str) -> bool:
    r"""Whether a pattern could take long on a long text (then it is searched with a time limit).

    >>> [needs_time_limit(p) for p in (r"\?\s*$", r"^\d{3}-\d{4}$", r"^(a|a)+$", r"\w+\s+\w+", r"(\w)\1")]
    [False, False, True, True, True]
    """
    return QUANTIFIED_GROUP.search(pattern) is not None or len(UNBOUNDED.findall(pattern)) > 1


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> tuple[regex.Pattern | re.Pattern, bool]:
    """The compiled pattern, and whether a search needs the time limit."""
    try:
        return regex.compile(pattern), needs_time_limit(pattern)
    except regex.error:  # a pattern Python's re accepts but regex does not
        return re.compile(pattern), False


class Unsupported(Exception):
    """The schema uses a keyword outside the compiled subset."""


def compile_check(schema: Any) -> Check | None:
    """A predicate that is True only for instances valid against `schema`; None if it cannot be compiled."""
    try:
        return _Compiler(schema).compile(schema)
    except Unsupported:
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),  # 1.0 is left to jsonschema
    "number": _is_number,
}


def _same(value: Any, expected: Any) -> bool:
    """JSON equality for scalars (True is not 1); containers are left to jsonschema."""
    if isinstance(value, (dict, list)) or isinstance(expected, (dict, list)):
        return False
    if isinstance(value, bool) or isinstance(expected, bool):
        return type(value) is type(expected) and value == expected
    return value == expected and (value is None) == (expected is None)


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict):
            raise Unsupported(repr(schema))
        if "$id" in schema and schema is not self.root:
            raise Unsupported("$id below the root changes how references resolve")
        checks = [self._keyword(key, value, schema) for key, value in schema.items() if key not in ANNOTATIONS]
        checks = [c for c in checks if c is not None]
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(check(v) for check in checks)

    def _ref(self, ref: str) -> Check:
        match = re.fullmatch(r"#/(\$defs|definitions)/([^/~]+)", ref)
        if match is None or not isinstance(self.root, dict) or match.group(2) not in self.root.get(match.group(1), {}):
            raise Unsupported(ref)
        if ref not in self.refs:
            self.refs[ref] = lambda v: False  # a recursive schema sees a placeholder until compiled
            compiled = self.compile(self.root[match.group(1)][match.group(2)])
            self.refs[ref] = compiled
        return lambda v: self.refs[ref](v)

    def _keyword(self, key: str, value: Any, schema: dict[str, Any]) -> Check | None:  # noqa: C901 - one branch per keyword
        if key == "type":
            names = [value] if isinstance(value, str) else list(value)
            if any(n not in _TYPES for n in names):
                raise Unsupported(f"type {value}")
            tests = [_TYPES[n] for n in names]
            return tests[0] if len(tests) == 1 else (lambda v: any(t(v) for t in tests))
        if key == "$ref":
            return self._ref(value)
        if key == "properties":
            subs = {name: self.compile(sub) for name, sub in value.items()}
            return lambda v: not isinstance(v, dict) or all(c(v[k]) for k, c in subs.items() if k in v)
        if key == "required":
            names = list(value)
            return lambda v: not isinstance(v, dict) or all(n in v for n in names)
        if key == "additionalProperties":
            if "patternProperties" in schema:
                raise Unsupported("patternProperties")
            known = set(schema.get("properties", {}))
            extra = self.compile(value)
            return lambda v: not isinstance(v, dict) or all(k in known or extra(x) for k, x in v.items())
        if key == "prefixItems":
            if "items" in schema:
                raise Unsupported("prefixItems with items")
            prefix = [self.compile(sub) for sub in value]
            return lambda v: not isinstance(v, list) or all(c(x) for c, x in zip(prefix, v, strict=False))
        if key == "items":
            if not isinstance(value, (dict, bool)) or "prefixItems" in schema:
                raise Unsupported("items")
            item = self.compile(value)
            return lambda v: not isinstance(v, list) or all(item(x) for x in v)
        if key == "contains":
            if "minContains" in schema or "maxContains" in schema:
                raise Unsupported("minContains")
            sub = self.compile(value)
            return lambda v: not isinstance(v, list) or any(sub(x) for x in v)
        if key in ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"):
            kind = {"Items": list, "Length": str, "Properties": dict}[key[3:]]
            bound = int(value)
            if key.startswith("min"):
                return lambda v: not isinstance(v, kind) or len(v) >= bound
            return lambda v: not isinstance(v, kind) or len(v) <= bound
        if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            limit = value
            test = {"minimum": lambda v: v >= limit, "maximum": lambda v: v <= limit,
                    "exclusiveMinimum": lambda v: v > limit, "exclusiveMaximum": lambda v: v < limit}[key]
            return lambda v: not _is_number(v) or test(v)
        if key == "pattern":  # a match that times out is not "certainly valid": jsonschema then says why
            return lambda v: not isinstance(v, str) or search_bounded(value, v) is True
        if key == "enum":
            options = list(value)
            return lambda v: any(_same(v, option) for option in options)
        if key == "const":
            return lambda v: _same(v, value)
        if key == "allOf":
            subs = [self.compile(s) for s in value]
            return lambda v: all(s(v) for s in subs)
        if key == "oneOf":
            # only branches told apart by their type: at most one can hold, so "this one holds" decides
            types = [sub.get("type") if isinstance(sub, dict) else None for sub in value]
            if any(not isinstance(t, str) or t not in _TYPES for t in types) or len(set(types)) < len(types) \
                    or {"integer", "number"} <= set(types):
                raise Unsupported("oneOf")
            subs = [self.compile(sub) for sub in value]
            return lambda v: any(s(v) for s in subs)
        if key == "anyOf":
            subs = [self.compile(s) for s in value]
            return lambda v: any(s(v) for s in subs)
        raise Unsupported(key)
