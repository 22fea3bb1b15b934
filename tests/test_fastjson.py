"""fastjson.loads reads every input exactly as json.loads does; dumps_wire round-trips through json."""

from __future__ import annotations

import json
import math
import random

import pytest

from lcsynth.fastjson import dumps_wire, loads

EDGE_CASES = [
    '{"a": NaN, "b": Infinity, "c": -Infinity}', '"\\ud800 lone surrogate"', '{"a": 1, "a": 2}',
    "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616", "9223372036854775807",
    "[0.1, 1e-05, 2.5e-7, 1.7976931348623157e308, 5e-324, -0.0, 1E400]",
    '{"x": {"y": [1, {"z": 0.30000000000000004}]}}',
    '"\\u00e9\\ud83d\\ude00 caf\u00e9 \u4f60\u597d"', '  {"spaced" : [ true , false , null ] }  ', "[]", "{}", '""',
]
INVALID = ["{bad", '{"a": 1,}', "[1 2]", "", "nul", '{"a" 1}', "\ufeff{}", "01", '"\x01"']


def same(a, b) -> bool:
    """Equal, and of the same types all the way down (NaN equals NaN here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randrange(-2**70, 2**70) if rng.random() < 0.2 else rng.randrange(-1000, 1000)
    if kind == 2:
        return rng.uniform(-1, 1) * 10 ** rng.randrange(-30, 30)
    if kind in (3, 4, 5):
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFF), 0x1F600, 10, 34, 92]))
                       for _ in range(rng.randrange(12)))
    if kind in (6, 7):
        return {f"k{rng.randrange(6)}": random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_read_as_json_reads_them(text):
    assert same(loads(text), json.loads(text)) and same(loads(text.encode()), json.loads(text.encode()))


@pytest.mark.parametrize("text", INVALID)
def test_invalid_input_raises_jsons_error(text):
    with pytest.raises(json.JSONDecodeError) as ours:
        loads(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_random_documents_read_identically_and_wire_bytes_round_trip():
    rng = random.Random(7)
    for _ in range(3000):
        value = random_value(rng)
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        assert same(loads(text), json.loads(text)), text
        assert same(json.loads(dumps_wire(value)), json.loads(text))
