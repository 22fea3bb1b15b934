"""`lcsynth cache ...`: look at, export and clear the request cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lcsynth.errors import InputError

app = typer.Typer(help="Inspect, export and clear the request cache.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

CachePath = Annotated[Path, typer.Option("--path", help="Cache file (a run's cache.path; default outputs/).")]


def open_cache(path: Path, must_exist: bool = True):
    """Open the cache at `path`; a missing file is a one-line error rather than a new empty cache."""
    from lcsynth.backends.cache import RequestCache

    if must_exist and not path.is_file():
        raise InputError(f"{path}: no cache file here (runs write <output.root>/cache.sqlite)")
    return RequestCache(path)


@app.command("stats")
def stats(path: CachePath = Path("outputs/cache.sqlite")) -> None:
    """Entries and tokens per model."""
    cache = open_cache(path)
    table = Table("model", "entries", "prompt tokens", "completion tokens")
    for row in cache.stats():
        table.add_row(row["model"], str(row["entries"]), str(row["prompt_tokens"]), str(row["completion_tokens"]))
    cache.close()
    out.print(table)
    out.print(f"{path}: {path.stat().st_size} bytes")


@app.command("export")
def export(out_file: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
           path: CachePath = Path("outputs/cache.sqlite")) -> None:
    """Write every cached response as JSONL."""
    cache = open_cache(path)
    count = cache.export(out_file)
    cache.close()
    err.print(f"exported {count} responses to {out_file}")


@app.command("clear")
def clear(path: CachePath = Path("outputs/cache.sqlite"),
          model: Annotated[str | None, typer.Option(help="Only this model's entries.")] = None,
          yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete cached responses (all, or one model's)."""
    if not yes:
        scope = "every model" if model is None else f"model {model}"
        typer.confirm(f"delete the cached responses of {scope} in {path}?", abort=True)
    cache = open_cache(path)
    count = cache.clear(model)
    cache.close()
    err.print(f"deleted {count} responses from {path}")
