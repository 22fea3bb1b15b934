"""The README and the pages under docs/ hold together: links resolve, every page is linked, code paths exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "DESIGN.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOTTED = re.compile(r"`(lcsynth(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
FILE = re.compile(r"`([\w/]+/\w+\.py)")  # a path from the repository, or from inside lcsynth/


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_the_two_commands_open_the_readme():
    assert (REPO / "README.md").read_text(encoding="utf-8").startswith(
        "# lcsynth\n\n```bash\nmake demo   # set up .venv, then build a long-context SFT set on the embedded model "
        "(CPU, no key)\nmake test   # set up .venv, then run ruff and the whole test suite\n```\n")


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists() or (anchor and anchor not in anchors(resolved)):
                broken.append(f"{page.name}: {target}")
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert [p.name for p in (REPO / "docs").glob("*.md") if f"(docs/{p.name}" not in readme] == []


def test_code_the_pages_name_exists():
    missing = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        missing += [f"{page.name}: {path}" for path in FILE.findall(text)
                    if not (REPO / path).exists() and not (REPO / "lcsynth" / path).exists()]
        for dotted in DOTTED.findall(text):
            if not resolves(dotted):
                missing.append(f"{page.name}: {dotted}")
    assert missing == []


def resolves(dotted: str) -> bool:
    """Whether a dotted name is a module, or an attribute of the longest module prefix of it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False
