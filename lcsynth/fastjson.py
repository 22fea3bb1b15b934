"""orjson on the hot path, with the json module's exact behaviour kept wherever the two could differ.

`loads` gives what `json.loads` gives: orjson first; input orjson refuses or reads differently (NaN, a lone
surrogate, an integer beyond 64 bits) goes to `json`, which accepts it or raises its usual error.
`dumps_wire` is for bytes that leave the process and are parsed again (request bodies): its float and
non-ASCII spelling differ from `json.dumps`, so nothing that is hashed or written to a dataset uses it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# orjson reads an integer beyond 64 bits as a float; text with a run of 19 digits goes to json.
_LONG_NUMBER = re.compile(r"\d{19}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


def loads(data: bytes | str) -> Any:
    """Parse JSON exactly as `json.loads` would."""
    long_number = (_LONG_NUMBER_BYTES if isinstance(data, bytes) else _LONG_NUMBER).search(data)
    if long_number is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps_wire(value: Any) -> bytes:
    """Compact UTF-8 JSON of `value`, for a request body."""
    try:
        return orjson.dumps(value)
    except TypeError:  # an int beyond 64 bits, a subclass orjson refuses: json spells it
        return json.dumps(value, ensure_ascii=False).encode()
