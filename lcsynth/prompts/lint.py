"""`lcsynth templates lint`: load, cross-check and trial-render templates before a run pays for them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import meta

from lcsynth.errors import ConfigError
from lcsynth.prompts.templates import _ENV, HELPERS, PromptTemplate, load_template_file, template_dirs
from lcsynth.text.tokens import Tokenizer


@dataclass(frozen=True)
class LintProblem:
    """One finding; errors fail the lint, warnings do not."""

    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.severity}: {self.message}"


class SampleValue(str):
    """A stand-in for structured inputs during a trial render: any attribute or key is another sample."""

    def __getattr__(self, name: str) -> SampleValue:
        if name.startswith("_"):
            raise AttributeError(name)
        return SampleValue(f"<{name}>")

    def __getitem__(self, key: Any) -> SampleValue:  # type: ignore[override]
        return SampleValue(f"<{key}>")


_SAMPLES = {"string": "sample text", "integer": 1, "number": 1.0, "boolean": True, "array": ["sample"]}


def sample_values(template: PromptTemplate, document: str) -> dict[str, Any]:
    """Values for a trial render: the sample document, defaults, and type-shaped samples."""
    values: dict[str, Any] = {"document": document}
    for name, spec in template.variables.items():
        if name == "document":
            continue
        if spec.default is not None:
            values[name] = spec.default
        else:
            values[name] = _SAMPLES.get(spec.type, SampleValue(f"<{name}>"))
    return values


def used_variables(template: PromptTemplate) -> set[str]:
    """Variables the Jinja sources read, minus the helpers every template has."""
    used: set[str] = set()
    for _, source in template.sources():
        used |= meta.find_undeclared_variables(_ENV.parse(source))
    return used - HELPERS


def lint_template(path: Path, known_methods: Iterable[str], tokenizer: Tokenizer | None,
                  document: str) -> list[LintProblem]:
    """Every problem in one template file."""
    try:
        template = load_template_file(path)
    except ConfigError as exc:
        return [LintProblem(str(path), _without_path(exc, path))]
    problems = []
    known = sorted(known_methods)
    if template.method not in known:
        message = f"method '{template.method}' is not a known method ({', '.join(known)})"
        problems.append(LintProblem(str(path), message))
    used, declared = used_variables(template), set(template.variables)
    if used - declared:
        names = ", ".join(sorted(used - declared))
        problems.append(LintProblem(str(path), f"uses undeclared variable(s) {names}: declare them under variables:"))
    if declared - used:
        names = ", ".join(sorted(declared - used))
        problems.append(LintProblem(str(path), f"declares variable(s) it never uses: {names}", "warning"))
    for check in (template.schema, lambda: template.render(tokenizer, **sample_values(template, document))):
        try:
            check()
        except ConfigError as exc:
            problems.append(LintProblem(str(path), _without_path(exc, path)))
    return problems


def _without_path(exc: ConfigError, path: Path) -> str:
    """The message of an error about `path`, without repeating the path the lint line starts with."""
    return str(exc).removeprefix(f"{path}: ").removeprefix(f"{path}, ")


def template_files(paths: list[Path] | None, extra_dirs: Iterable[str] = ()) -> list[Path]:
    """The files to lint: those under `paths`, or everything on the search path."""
    roots = paths or template_dirs(extra_dirs)
    files = []
    for root in roots:
        if not root.exists():
            raise ConfigError(f"{root}: no such file or folder")
        files += [root] if root.is_file() else sorted(root.rglob("*.yaml"))
    return files
