"""The layout holds: imports run downward (checked by import-linter), modules stay small, packages say what they own.

The import rule is tried on a copy of the package: as it is (kept), then with one wrong-way import added (broken).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lcsynth"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` over the copy of lcsynth in `root`, with that copy first on the path."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(PACKAGE, root / "lcsynth", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_package_keeps_its_layers(copy):
    done = lint_imports(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "complaint"), [
    ("text/quality.py", "from lcsynth.run import runner", "lcsynth.text is not allowed to import lcsynth.run"),
    ("corpus/retrieval.py", "from lcsynth.backends import cache",
     "lcsynth.corpus is not allowed to import lcsynth.backends"),
    # the package root reaches run and out (run_recipe, load): a module below them must not import it
    ("backends/limits.py", "import lcsynth", "lcsynth.backends is not allowed to import lcsynth.out"),
])
def test_a_wrong_way_import_breaks_the_contract(copy, module, line, complaint):
    path = copy / "lcsynth" / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + f"\n{line}  # noqa\n", encoding="utf-8")
    try:
        done = lint_imports(copy)
    finally:
        path.write_text(original, encoding="utf-8")
    assert done.returncode != 0
    assert complaint in done.stdout, done.stdout


def test_no_module_is_over_400_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 400} == {}


def test_every_package_says_what_it_owns_and_what_it_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "Owns " in doc, init
        assert "may import" in doc.lower(), init
