import pytest

from lcsynth.config import apply_override, load_recipe, parse_token_count
from lcsynth.errors import ConfigError


def write(tmp_path, body: str):
    path = tmp_path / "r.yaml"
    path.write_text(body)
    return path


def test_minimal_recipe_gets_defaults_and_name_from_file(tmp_path):
    recipe = load_recipe(write(tmp_path, "methods: [{name: longmagpie}]"))
    assert recipe.backend.type == "llamacpp"
    assert recipe.output.name == "r"
    assert recipe.methods[0].params == {}


def test_unknown_key_names_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"r.yaml: output.nmae: unknown key"):
        load_recipe(write(tmp_path, "methods: [{name: x}]\noutput: {nmae: a}"))


def test_wrong_type_names_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"limits.max_documents: Input should be a valid integer"):
        load_recipe(write(tmp_path, "methods: [{name: x}]\nlimits: {max_documents: many}"))


def test_bad_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"r.yaml:2: not valid YAML"):
        load_recipe(write(tmp_path, "methods: [{name: x}]\nseed: 1: 2\n"))


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


def test_methods_are_required(tmp_path):
    with pytest.raises(ConfigError, match="methods: Field required"):
        load_recipe(write(tmp_path, "seed: 1"))


def test_overrides_use_dotted_paths_lists_and_yaml_values(tmp_path):
    recipe = load_recipe(
        write(tmp_path, "methods: [{name: longmagpie, samples_per_document: 1}]"),
        ["output.name=x", "limits.max_documents=3", "methods.0.samples_per_document=4",
         "templates=[a, b]", "context.max_document_tokens=2k", "backend.base_url=http://127.0.0.1:9/v1"],
    )
    assert recipe.output.name == "x"
    assert recipe.limits.max_documents == 3
    assert recipe.methods[0].params["samples_per_document"] == 4
    assert recipe.templates == ["a", "b"]
    assert recipe.context.max_document_tokens == 2048
    assert recipe.backend.base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(("assignment", "message"), [
    ("novalue", "expected key=value"),
    ("methods.5.x=1", "not an index of a list of 1 items"),
    ("seed.x=1", "cannot set a key inside a int"),
    ("output.name=[unclosed", "not valid YAML"),
])
def test_bad_overrides(assignment, message):
    with pytest.raises(ConfigError, match=message):
        apply_override({"methods": [{"name": "a"}], "seed": 1}, assignment)


def test_token_counts():
    assert parse_token_count("32k") == 32768
    assert parse_token_count("1m") == 1048576
    assert parse_token_count(100) == 100
    with pytest.raises(ValueError, match="not a token count"):
        parse_token_count("lots")


def test_every_shipped_recipe_loads_with_valid_method_parameters(request):
    from lcsynth.config import load_recipe
    from lcsynth.methods.base import create_method

    recipes = sorted((request.config.rootpath / "recipes").glob("*.yaml"))
    assert {r.stem for r in recipes} >= {"demo", "keychain", "untie_knots", "nextlong", "longpo"}
    for path in recipes:
        recipe = load_recipe(path)
        assert [create_method(spec, i).name for i, spec in enumerate(recipe.methods)] == [
            spec.name for spec in recipe.methods], path
