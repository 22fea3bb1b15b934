"""The "Write your own template" walk-through (docs/templates.md, linked from the README), run as written on the real
embedded model."""

import json
import re
import subprocess
import sys

import pytest

from lcsynth.prompts.schemas import validation_error

pytestmark = pytest.mark.model

BLOCK = re.compile(r"<!-- walkthrough: (?P<path>\S+) -->\n```yaml\n(?P<body>.*?)```", re.S)


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_walkthrough_files_lint_and_generate_schema_valid_rows(tmp_path, request):
    page = (request.config.rootpath / "docs" / "templates.md").read_text()
    assert "docs/templates.md#write-your-own-template" in (request.config.rootpath / "README.md").read_text()
    blocks = {m["path"]: m["body"] for m in BLOCK.finditer(page)}
    assert set(blocks) == {"my_templates/my/qa.yaml", "my_templates/my/qa_row.yaml", "my_recipe.yaml"}
    for path, body in blocks.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)

    lint = cli("templates", "lint", "my_templates", cwd=tmp_path)
    assert lint.returncode == 0 and "2 template(s), 0 error(s), 0 warning(s)" in lint.stderr, lint.stderr
    run = cli("generate", "my_recipe.yaml", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr

    import yaml

    schema = yaml.safe_load(blocks["my_templates/my/qa.yaml"])["response_schema"]
    out = tmp_path / "outputs" / "my_qa"
    rows = [json.loads(line) for line in (out / "sft-00000.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert rows and len(rows) + len(rejects) == 3
    for row in rows:
        user, assistant = row["messages"]
        question = user["content"].rsplit("\n\n", 1)[1]
        assert validation_error({"question": question, "answer": assistant["content"]}, schema) is None
        assert row["meta"]["templates"] == ["my/qa@1", "my/qa_row@1"]
    assert {r["reason"] for r in rejects} <= {"output_truncated", "invalid_output", "invalid_json"}
