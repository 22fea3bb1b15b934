"""`lcsynth view`: read a run's rows and rejects in the browser, served on 127.0.0.1 or written as static files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def view(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (finished, or still being written).")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8765,
    export_dir: Annotated[Path | None, typer.Option("--export", help="Write the page as static files into this "
                                                                     "folder instead of serving it.")] = None,
    max_rows: Annotated[int, typer.Option(help="With --export: at most this many lines (rows, then "
                                               "rejects).")] = 2000,
) -> None:
    """Serve a page that lists a run's rows and rejects, filters them, and shows one with its spans and meta.

    Rows are read lazily (only byte offsets are kept), and the page follows a run that is still writing.
    """
    from lcsynth.view.server import export, serve

    if export_dir is not None:
        written = export(run_dir, export_dir, max_rows)
        print(f"wrote {written} lines and the page to {export_dir / 'index.html'}", file=sys.stderr)
        return

    def ready(url: str) -> None:
        print(f"viewing {run_dir} at {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)

    serve(run_dir, port, ready)
