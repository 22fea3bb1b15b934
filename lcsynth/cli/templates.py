"""`lcsynth templates ...`: list, show, render, scaffold and lint prompt templates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from lcsynth.errors import ConfigError, InputError

app = typer.Typer(help="List, show, render, scaffold and lint prompt templates.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Folders = Annotated[list[str] | None, typer.Option(
    "--templates", "-t", help="Extra template folder(s), searched after built-ins and $LCSYNTH_TEMPLATES.")]


@app.command("list")
def list_templates(templates: Folders = None) -> None:
    """List templates by name; when several files share a name, the last on the search path wins."""
    from lcsynth.prompts.templates import scan_templates

    found = scan_templates(templates or [])
    winners = {t.name: t.path for t in found}
    table = Table("name", "method", "version", "file", "status")
    table.columns[3].overflow = "fold"
    for template in sorted(found, key=lambda t: t.name):
        status = "active" if winners[template.name] == template.path else "overridden"
        table.add_row(template.name, template.method, str(template.version), template.path, status)
    out.print(table)


@app.command("show")
def show(name: str, templates: Folders = None) -> None:
    """Print the winning file of template NAME with syntax highlighting."""
    from lcsynth.prompts.templates import get_template

    path = Path(get_template(name, templates or []).path)
    out.print(f"# {path}")
    out.print(Syntax(path.read_text(encoding="utf-8"), "yaml", word_wrap=True))


@app.command("render")
def render(
    name: str,
    doc: Annotated[Path, typer.Option("--doc", help="Text file used as the document.")],
    var: Annotated[list[str] | None, typer.Option("--var", help="Set a variable: --var key=value (YAML).")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="GGUF path or HF tokenizer; default the bundled model.")] = None,
    templates: Folders = None,
) -> None:
    """Print exactly what template NAME sends for a document, and its token count."""
    from lcsynth.prompts.templates import get_template

    template = get_template(name, templates or [])
    try:
        document = doc.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--doc {doc}: cannot read ({exc.strerror})") from None
    tok = load_cli_tokenizer(tokenizer)
    rendered = template.render(tok, document=document, **parse_vars(var or []))
    if rendered.prompt is not None:
        out.print(rendered.prompt, markup=False, highlight=False)
    for message in rendered.messages or []:
        out.rule(message["role"])
        out.print(message["content"], markup=False, highlight=False)
    out.rule()
    out.print(f"{prompt_token_count(tok, rendered)} tokens ({tok.name})", highlight=False)


@app.command("new")
def new(
    name: str,
    method: Annotated[str, typer.Option(help="Method the template is for, e.g. template or longmagpie.")] = "template",
    folder: Annotated[Path, typer.Option("--dir", help="Folder of your templates.")] = Path("my_templates"),
) -> None:
    """Write a commented starting point for template NAME (e.g. my/qa) into --dir."""
    from lcsynth.prompts.scaffold import scaffold

    path = folder / f"{name}.yaml"
    if path.exists():
        raise ConfigError(f"{path} already exists; choose another name or delete it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scaffold(name, method), encoding="utf-8")
    err.print(f"wrote {path}; check it with: lcsynth templates lint {path}")


@app.command("lint")
def lint(
    paths: Annotated[list[Path] | None, typer.Argument(help="Template files or folders (default: all).")] = None,
    templates: Folders = None,
) -> None:
    """Load every template, compare declared and used variables, check schemas, trial-render each."""
    from lcsynth.corpus.demo import render_module
    from lcsynth.methods.base import known_methods
    from lcsynth.prompts.lint import lint_template, template_files

    files = template_files(paths, templates or [])
    tok, document = load_cli_tokenizer(None), render_module("json")
    problems = [p for f in files for p in lint_template(f, known_methods(), tok, document)]
    for problem in problems:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    errors = sum(p.severity == "error" for p in problems)
    err.print(f"{len(files)} template(s), {errors} error(s), {len(problems) - errors} warning(s)")
    if errors:
        raise typer.Exit(1)


def parse_vars(assignments: list[str]) -> dict:
    """`key=value` pairs, values read as YAML."""
    values = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--var {item!r}: expected key=value")
        values[key] = yaml.safe_load(raw) if raw else ""
    return values


def load_cli_tokenizer(name: str | None):
    """The tokenizer to count with: the given one, or the bundled model's vocabulary."""
    from lcsynth.backends.llamacpp import bundled_gguf
    from lcsynth.text.tokens import load_tokenizer

    return load_tokenizer(name or str(bundled_gguf()))


def prompt_token_count(tokenizer, rendered) -> int:
    """Tokens the model reads: for a GGUF vocabulary, the chat-template rendering with its markup."""
    from lcsynth.text.chat import template_from_metadata
    from lcsynth.text.tokens import LlamaCppTokenizer

    if rendered.prompt is not None:
        return len(tokenizer.encode(rendered.prompt))
    if isinstance(tokenizer, LlamaCppTokenizer):
        text = template_from_metadata(tokenizer.metadata).render(rendered.messages)
        return len(tokenizer.encode_special(text))
    return sum(len(tokenizer.encode(m["content"])) for m in rendered.messages)
