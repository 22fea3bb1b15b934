"""`lcsynth templates ...` as a user runs it."""

import os
import subprocess
import sys

from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.prompts.templates import get_template
from lcsynth.text.chat import template_from_metadata


def cli(*args, cwd, env=None):
    environ = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", "templates", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=environ)


def test_new_scaffold_lints_clean_and_renders_exactly(tmp_path, smol_tokenizer):
    made = cli("new", "my/qa", "--dir", "mine", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "mine" / "my" / "qa.yaml").exists()
    assert cli("new", "my/qa", "--dir", "mine", cwd=tmp_path).stderr.strip().endswith("already exists; choose "
                                                                                        "another name or delete it")
    lint = cli("lint", "mine", cwd=tmp_path)
    assert lint.returncode == 0 and "1 template(s), 0 error(s), 0 warning(s)" in lint.stderr

    (tmp_path / "doc.txt").write_text("The json module reads and writes JSON.")
    shown = cli("render", "my/qa", "--doc", "doc.txt", "-t", "mine", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    messages = get_template("my/qa", [str(tmp_path / "mine")]).render(document="The json module reads and writes JSON.")
    assert messages.messages[0]["content"] in shown.stdout
    chat = template_from_metadata(smol_tokenizer.metadata).render(messages.messages)
    assert f"{len(smol_tokenizer.encode_special(chat))} tokens ({bundled_gguf()})" in shown.stdout


def test_list_marks_overridden_templates_and_show_prints_the_winner(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "q.yaml").write_text(
        "name: longmagpie/query\nmethod: longmagpie\nvariables: {document: {}}\n"
        "messages: [{role: system, content: 'Mine {{ document }}'}]\n")
    listed = cli("list", "-t", "mine", cwd=tmp_path).stdout
    rows = [line for line in listed.splitlines() if "longmagpie/query" in line]
    assert len(rows) == 2
    assert "overridden" in rows[0] and "active" in rows[1] and "mine/q.yaml" in rows[1]
    shown = cli("show", "longmagpie/query", cwd=tmp_path, env={"LCSYNTH_TEMPLATES": str(tmp_path / "mine")})
    assert "Mine {{ document }}" in shown.stdout


def test_lint_reports_each_problem_on_one_line_and_fails(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.yaml").write_text("name: a\nmethod: wrong\nvariables: {document: {}}\n"
                                             "messages: [{role: user, content: '{{ document }}{{ x }}'}]\n")
    (tmp_path / "bad" / "b.yaml").write_text("name: b\nmethod: template\n"
                                             "messages: [{role: user, content: '{% if %}'}]\n")
    result = cli("lint", "bad", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("bad/a.yaml: error: method 'wrong' is not a known method")
    assert lines[1].startswith("bad/a.yaml: error: uses undeclared variable(s) x")
    assert lines[-2].startswith("bad/b.yaml: error: message 0 (user), line 1")
    assert lines[-1] == "2 template(s), 4 error(s), 0 warning(s)"
