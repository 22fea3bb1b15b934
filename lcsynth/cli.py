"""The `lcsynth` command line: thin wrappers that parse arguments and call library functions."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lcsynth import __version__
from lcsynth.cli_templates import app as templates_app
from lcsynth.errors import LcsynthError

app = typer.Typer(
    help="Make long-context training data (SFT, DPO, GRPO, pretraining) from real long documents.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
corpus_app = typer.Typer(help="Build and inspect corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(templates_app, name="templates")
err = Console(stderr=True, soft_wrap=True)


@app.command()
def generate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file, e.g. recipes/demo.yaml.")],
    set_: Annotated[list[str] | None, typer.Option(  # noqa: UP007 (typer needs Optional here)
        "--set", help="Override a recipe key: --set output.name=run1 --set limits.max_documents=10.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Run a recipe and write its dataset under output.root/output.name."""
    from lcsynth.config import load_recipe
    from lcsynth.pipeline import run_recipe

    loaded = load_recipe(recipe, set_ or [])
    summary = asyncio.run(run_recipe(loaded, show_progress=not quiet))
    rows = ", ".join(f"{n} {kind}" for kind, n in summary.rows.items()) or "no rows"
    rejects = sum(summary.rejects.values())
    err.print(f"[green]done[/]: {rows}, {rejects} rejects → {summary.run_dir}")
    if not summary.rows:
        err.print("[yellow]warning[/]: the run produced no rows; see rejects.jsonl for the reasons")
        raise typer.Exit(3)


@corpus_app.command("demo")
def corpus_demo(
    out: Annotated[Path, typer.Option("--out", help="Folder to write demo.jsonl into.")] = Path("corpus"),
) -> None:
    """Write the demo corpus (pydoc pages of the standard library) as JSONL."""
    from lcsynth.demo_corpus import write_demo_corpus

    path = write_demo_corpus(out)
    lines = sum(1 for _ in path.open(encoding="utf-8"))
    err.print(f"wrote {lines} documents to {path}")


@app.command()
def version() -> None:
    """Print lcsynth's version."""
    print(__version__)


def main() -> None:
    """Console-script entry: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except LcsynthError as exc:
        if os.environ.get("LCSYNTH_DEBUG"):
            raise
        err.print(f"[red]error[/]: {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
