r"""The JSON schema a decoder is held to: a template's schema less what decoders read differently.

JSON Schema's `pattern` is a search (the string contains a match), but constrained decoders (vLLM's xgrammar
and guidance back ends, llama.cpp's grammars, the OpenAI-compatible servers built on them) make the whole
string match it. A question pattern `\?\s*$` then admits only "?" and spaces, and `\S` a single character:
the model is forced into degenerate output that the full schema rejects afterwards. So patterns are left out of
what the decoder sees; every output is still validated against the full schema once it comes back.
"""

from __future__ import annotations

from typing import Any

_MEMO: dict[tuple[int, int | None], tuple[Any, Any]] = {}


def decoding_schema(schema: Any, max_length: int | None = None) -> Any:
    r"""`schema` without `pattern` keywords (and, with `max_length`, without `maxLength` bounds above it).

    >>> decoding_schema({"properties": {"q": {"type": "string", "pattern": "\\?$", "maxLength": 1500}}}, 500)
    {'properties': {'q': {'type': 'string'}}}
    >>> decoding_schema({"type": "string", "minLength": 8, "pattern": "\\S"})
    {'type': 'string', 'minLength': 8}
    """
    key = (id(schema), max_length)
    memo = _MEMO.get(key)
    if memo is not None and memo[0] is schema:  # templates reuse one schema object for all their requests
        return memo[1]
    result = _strip(schema, max_length)
    if len(_MEMO) > 256:
        _MEMO.clear()
    _MEMO[key] = (schema, result)
    return result


def _strip(schema: Any, max_length: int | None) -> Any:
    """The recursive part of `decoding_schema`."""
    if isinstance(schema, dict):
        return {k: _strip(v, max_length) for k, v in schema.items()
                if not (k == "pattern" and isinstance(v, str))
                and not (max_length is not None and k == "maxLength" and isinstance(v, int) and v > max_length)}
    if isinstance(schema, list):
        return [_strip(v, max_length) for v in schema]
    return schema
