"""Turning model text into values: plain text, JSON (leniently located, never invented), or regex groups."""

from __future__ import annotations

import json
import re
from typing import Any

from lcsynth.errors import Reject

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)\n?```", re.S)


def extract_json(text: str) -> Any:
    r"""Parse the JSON value in `text`, tolerating code fences and prose around one object or array.

    >>> extract_json('Sure! ```json\n{"a": 1}\n``` Hope this helps.')
    {'a': 1}
    >>> extract_json('The answer is {"b": [1, 2]}.')
    {'b': [1, 2]}
    """
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    starts = [i for i in (candidate.find("{"), candidate.find("[")) if i >= 0]
    if not starts:
        raise Reject("invalid_json", "no JSON object or array in the output", raw=text)
    start = min(starts)
    try:
        value, _ = json.JSONDecoder().raw_decode(candidate[start:])
    except json.JSONDecodeError as exc:
        raise Reject("invalid_json", f"{exc.msg} at character {start + exc.pos}", raw=text) from None
    return value


def parse_output(text: str, how: str, pattern: str | None = None) -> Any:
    """Parse a completion as the template says: "text", "json" or "regex" (a dict of named groups)."""
    if how == "json":
        return extract_json(text)
    if how == "regex":
        match = re.search(pattern or "", text, re.S)
        if match is None:
            raise Reject("no_match", f"output does not match {pattern!r}", raw=text)
        return {k: (v.strip() if isinstance(v, str) else v) for k, v in match.groupdict().items()}
    return text.strip()
