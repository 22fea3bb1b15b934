import pytest

from lcsynth.errors import ConfigError
from lcsynth.paths import data_dir
from lcsynth.prompts.schemas import load_schema, validation_error

META = {"method": "m", "model": "x", "seed": 1, "doc_id": "d"}
USER, BOT = {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}


def test_every_builtin_schema_is_a_valid_json_schema():
    names = sorted(p.name for p in data_dir("schemas").glob("*.json"))
    assert {"sft.json", "dpo.json", "grpo.json", "pretrain.json"} <= set(names)
    for name in names:
        assert load_schema(name)["$schema"].endswith("2020-12/schema")


@pytest.mark.parametrize(("kind", "good", "bad", "problem"), [
    ("sft", {"messages": [USER, BOT], "meta": META}, {"messages": [USER], "meta": META}, "messages: "),
    ("dpo", {"prompt": [USER], "chosen": [BOT], "rejected": [BOT], "meta": META},
     {"prompt": [USER], "chosen": [BOT], "meta": META}, "(root): 'rejected' is a required property"),
    ("grpo", {"prompt": [USER], "ground_truth": ["Paris"], "meta": META},
     {"prompt": [USER], "ground_truth": [], "meta": META}, "ground_truth: "),
    ("pretrain", {"text": "t", "meta": {**META, "doc_boundaries": [[0, 1]]}},
     {"text": "t", "meta": {**META, "doc_boundaries": [[0, "x"]]}}, "meta/doc_boundaries/0/1: 'x' is not of type"),
])
def test_row_schemas_accept_trainer_shapes_and_name_the_failing_path(kind, good, bad, problem):
    assert validation_error(good, kind) is None
    assert validation_error(bad, kind).startswith(problem)


def test_unknown_and_broken_schemas_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="schema 'nope' not found"):
        load_schema("nope")
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": 5}')
    with pytest.raises(ConfigError, match=rf"^{bad}: not a valid JSON Schema at type: 5 is not valid"):
        load_schema(str(bad))
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": ')
    with pytest.raises(ConfigError, match=rf"^{broken}:1: schema is not valid JSON"):
        load_schema(str(broken))


def test_every_shipped_schema_compiles_to_a_llama_cpp_grammar():
    """Constrained decoding on the embedded model must accept every schema a template ships with."""
    from pathlib import Path

    from lcsynth.backends.llamacpp import grammar_for

    for path in sorted(Path(__file__).parent.parent.joinpath("schemas").glob("*.json")):
        assert grammar_for(path.read_text()) is not None, path.name
