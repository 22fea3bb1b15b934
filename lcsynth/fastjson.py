"""orjson on the hot path, with the json module's exact behaviour kept wherever the two could differ.

`loads` gives what `json.loads` gives: orjson first; input orjson refuses or reads differently (NaN, a lone
surrogate, a number orjson would read as a float) goes to `json`, which accepts it or raises its usual error.
`dumps_wire` is for bytes that leave the process and are parsed again (request bodies): its float and
non-ASCII spelling differ from `json.dumps`, so nothing that is hashed or written to a dataset uses it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Parse JSON exactly as `json.loads` would."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
    # orjson reads an integer beyond 64 bits as a float, and its float parsing is not json's: a value with a
    # float anywhere is read again by json (rows and replies seldom hold one)
    return json.loads(data) if _has_float(value) else value


def _has_float(value: Any) -> bool:
    if isinstance(value, str):
        return False
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return isinstance(value, float)


def dumps_wire(value: Any) -> bytes:
    """Compact UTF-8 JSON of `value`, for a request body."""
    try:
        return orjson.dumps(value)
    except TypeError:  # an int beyond 64 bits, a subclass orjson refuses: json spells it
        return json.dumps(value, ensure_ascii=False).encode()
