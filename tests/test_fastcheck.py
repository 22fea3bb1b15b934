"""The compiled fast check never accepts what jsonschema rejects, and does accept the valid rows it sees."""

import copy
import json
import random

import pytest
from jsonschema import Draft202012Validator

from lcsynth.paths import data_dir
from lcsynth.prompts.fastcheck import compile_check
from lcsynth.prompts.schemas import load_schema, validation_error

SCHEMAS = sorted(p.name for p in data_dir("schemas").glob("*.json"))
MSG = [{"role": "user", "content": "Read this. What is it?"}, {"role": "assistant", "content": "A module."}]
VALID_ROWS = {
    "sft.json": {"messages": MSG, "meta": {"method": "m", "model": "x", "seed": 1, "doc_id": "d"}},
    "dpo.json": {"prompt": MSG[:1], "chosen": MSG[1:], "rejected": [{"role": "assistant", "content": "No."}],
                 "meta": {"method": "m", "model": "x", "seed": 1, "doc_id": "d"}},
    "grpo.json": {"prompt": MSG[:1], "ground_truth": "a module", "meta": {"method": "m", "seed": 2}},
    "pretrain.json": {"text": "Some text.", "meta": {"method": "m", "seed": 3, "doc_boundaries": [[0, 5], [5, 10]]}},
}
SCALARS = [None, True, False, 0, 1, -1, 2.5, 1.0, "", "x", "What?", "a" * 600, [], {}, ["x"], [MSG[0]]]


def guess(schema, rng, root=None, depth=0):
    """A rough instance for a schema: often valid, sometimes not; the mutations below do the rest."""
    root = root or schema
    if not isinstance(schema, dict) or depth > 6:
        return copy.deepcopy(rng.choice(SCALARS))
    if "$ref" in schema:
        return guess(root["$defs"][schema["$ref"].rsplit("/", 1)[1]], rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            return guess(rng.choice(schema[key]), rng, root, depth + 1)
    kind = schema.get("type")
    kind = rng.choice(kind) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: guess(v, rng, root, depth + 1) for k, v in props.items()}
    if kind == "array":
        n = max(schema.get("minItems", 1), 1)
        return [guess(schema.get("items", {}), rng, root, depth + 1) for _ in range(n)]
    if kind == "string":
        text = "Which module is described here?"
        return text[: schema.get("maxLength", 200)]
    if kind == "integer":
        return max(schema.get("minimum", 3), 3)
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    return copy.deepcopy(rng.choice(SCALARS))


def mutate(value, rng):
    """One random change somewhere inside a JSON value."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        roll = rng.random()
        if roll < 0.2:
            del value[key]
        elif roll < 0.3:
            value["extra_" + str(rng.randrange(3))] = copy.deepcopy(rng.choice(SCALARS))
        else:
            value[key] = mutate(value[key], rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        roll = rng.random()
        if roll < 0.2:
            value.pop(rng.randrange(len(value)))
        elif roll < 0.35:
            value.append(copy.deepcopy(rng.choice(value)))
        else:
            i = rng.randrange(len(value))
            value[i] = mutate(value[i], rng)
        return value
    return copy.deepcopy(rng.choice(SCALARS))


@pytest.mark.parametrize("name", SCHEMAS)
def test_fast_check_never_accepts_an_invalid_instance(name):
    schema = load_schema(name)
    fast = compile_check(schema)
    assert fast is not None, f"{name} is outside the compiled subset"
    judge = Draft202012Validator(schema)
    rng = random.Random(name)
    seeds = [guess(schema, rng) for _ in range(20)] + ([VALID_ROWS[name]] if VALID_ROWS.get(name) else [])
    accepted = valid = 0
    for i in range(3000):
        instance = copy.deepcopy(rng.choice(seeds))
        for _ in range(i % 4):
            instance = mutate(instance, rng)
        ok = judge.is_valid(instance)
        valid += ok
        if fast(instance):
            accepted += 1
            assert ok, f"fast check accepted an invalid {name} instance: {json.dumps(instance)[:300]}"
    assert valid > 0 and accepted >= valid * 0.5, (name, valid, accepted)  # it does real work


def test_validation_error_is_unchanged_for_valid_and_invalid_rows():
    row = VALID_ROWS["sft.json"]
    assert validation_error(row, "sft") is None
    broken = copy.deepcopy(row)
    broken["messages"][1]["role"] = "robot"
    assert validation_error(broken, "sft").startswith("messages")  # jsonschema still writes the message
    inline = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert validation_error({"n": 1.0}, inline) is None  # jsonschema's answer where the fast path defers
    assert "'n' is a required property" in validation_error({}, inline)


@pytest.mark.parametrize("schema", [
    {"not": {"type": "string"}},
    {"oneOf": [{"minLength": 1}, {"maxLength": 3}]},
    {"$ref": "https://example.com/other.json"},
    {"properties": {"a": {"$id": "inner", "$ref": "#/$defs/x"}}, "$defs": {"x": {}}},
    {"uniqueItems": True},
])
def test_keywords_outside_the_subset_leave_it_to_jsonschema(schema):
    assert compile_check(schema) is None
