"""Template files: loading, rendering, the sandbox, the search path and lint."""

import pytest

from lcsynth.errors import ConfigError
from lcsynth.methods.base import known_methods
from lcsynth.paths import data_dir
from lcsynth.prompts.lint import lint_template
from lcsynth.prompts.templates import find_templates, get_template, load_template_file, scan_templates

GOOD = """\
name: my/ask
method: template
variables:
  document: {type: string}
  style: {type: string, default: brief}
messages:
  - role: user
    content: |
      {{ document }}
      Ask something {{ style }}.
response_schema: {type: object, properties: {q: {type: string}}, required: [q]}
parse: json
"""


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def lint(path, tokenizer=None):
    return lint_template(path, known_methods(), tokenizer, "A sample document.")


def test_every_builtin_template_lints_clean(smol_tokenizer):
    files = sorted(data_dir("templates").rglob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        assert lint(path, smol_tokenizer) == [], path


def test_render_fills_defaults_and_keeps_roles(tmp_path):
    template = load_template_file(write(tmp_path, "t.yaml", GOOD))
    rendered = template.render(document="DOC")
    assert rendered.messages == [{"role": "user", "content": "DOC\nAsk something brief.\n"}]
    assert template.render(document="D", style="long").messages[0]["content"].endswith("long.\n")


def test_a_variable_named_like_a_helper_wins_over_the_helper(tmp_path, smol_tokenizer):
    source = GOOD.replace("style: {type: string, default: brief}", "chunk: {type: string}").replace(
        "{{ style }}", "{{ chunk }}")
    template = load_template_file(write(tmp_path, "t.yaml", source))
    assert template.render(smol_tokenizer, document="D", chunk="PASSAGE").messages[0]["content"].endswith(
        "Ask something PASSAGE.\n")


def test_undefined_variable_names_file_part_line_and_variable(tmp_path):
    path = write(tmp_path, "t.yaml", GOOD.replace("{{ style }}", "{{ styel }}"))
    with pytest.raises(ConfigError) as caught:
        load_template_file(path).render(document="D")
    assert str(caught.value) == f"{path}, message 0 (user), line 2: 'styel' is undefined (declare it or pass it)"
    (problem,) = [p for p in lint(path) if "undeclared" in p.message]
    assert str(problem) == f"{path}: error: uses undeclared variable(s) styel: declare them under variables:"


def test_sandbox_refuses_python_internals(tmp_path):
    path = write(tmp_path, "t.yaml", GOOD.replace("{{ style }}", "{{ ''.__class__.__mro__ }}"))
    with pytest.raises(ConfigError, match=rf"^{path}, message 0 \(user\): refused by the sandbox"):
        load_template_file(path).render(document="D")
    assert any("refused by the sandbox" in p.message for p in lint(path))


def test_invalid_schema_inline_or_in_a_file(tmp_path):
    inline = write(tmp_path, "a.yaml", GOOD.replace("type: object", "type: objekt"))
    (problem,) = lint(inline)
    assert str(problem).startswith(f"{inline}: error: ")
    assert "not a valid JSON Schema at type" in problem.message
    write(tmp_path, "bad.json", '{"type": "object", "required": "q"}')
    beside = write(tmp_path, "b.yaml", GOOD.replace(
        "response_schema: {type: object, properties: {q: {type: string}}, required: [q]}", "response_schema: bad.json"))
    (problem,) = lint(beside)
    assert f"{tmp_path / 'bad.json'}: not a valid JSON Schema at required" in problem.message


def test_wrong_method_name(tmp_path):
    path = write(tmp_path, "t.yaml", GOOD.replace("method: template", "method: longmagpy"))
    (problem,) = lint(path)
    assert str(problem).startswith(f"{path}: error: method 'longmagpy' is not a known method (keychain, longmagpie, ")


@pytest.mark.parametrize(("edit", "message"), [
    (("messages:", "prompt: hi\nmessages:"), "either `messages` or `prompt`"),
    (("parse: json", "parse: regex\npattern: '(.*)'"), "pattern needs at least one named group"),
    (("{{ style }}", "{% if %}"), "message 0 (user), line 2: Expected an expression"),
    (("name: my/ask", "name: my ask"), "name: String should match pattern"),
    (("variables:", "colour: red\nvariables:"), "colour: unknown key"),
])
def test_malformed_templates_fail_on_one_line_naming_the_file(tmp_path, edit, message):
    path = write(tmp_path, "t.yaml", GOOD.replace(*edit))
    with pytest.raises(ConfigError) as caught:
        load_template_file(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unused_declared_variable_is_a_warning(tmp_path):
    path = write(tmp_path, "t.yaml", GOOD.replace("variables:", "variables:\n  extra: {type: integer}"))
    (problem,) = lint(path)
    assert problem.severity == "warning" and "never uses: extra" in problem.message


def test_user_folder_overrides_builtin_by_name(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    write(user, "q.yaml", "name: longmagpie/query\nmethod: longmagpie\n"
                          "messages: [{role: system, content: 'X {{ document }}'}]")
    assert get_template("longmagpie/query", [str(user)]).path == str(user / "q.yaml")
    assert get_template("longmagpie/query").path != str(user / "q.yaml")
    monkeypatch.setenv("LCSYNTH_TEMPLATES", str(user))
    assert find_templates()["longmagpie/query"].render(document="d").messages[0]["content"] == "X d"
    assert [t.path for t in scan_templates() if t.name == "longmagpie/query"][-1] == str(user / "q.yaml")
    with pytest.raises(ConfigError, match="template 'nope' not found; known: keychain/prompt, keychain/qa, "):
        get_template("nope")


def test_token_helpers_use_the_model_tokenizer(tmp_path, smol_tokenizer):
    text = "one two three four five six seven eight nine ten " * 10
    path = write(tmp_path, "t.yaml", "name: t\nmethod: template\nvariables: {document: {}}\nmessages:\n"
                 "  - {role: user, content: '{{ truncate_tokens(document, 5) }}|{{ chunk(document, 1, 4) }}'}\n")
    content = load_template_file(path).render(smol_tokenizer, document=text).messages[0]["content"]
    ids = smol_tokenizer.encode(text)
    assert content == smol_tokenizer.decode(ids[:5]) + "|" + smol_tokenizer.decode(ids[4:8])
    with pytest.raises(ConfigError, match="need a tokenizer"):
        load_template_file(path).render(document=text)
