"""The `lcsynth` command: parse, load the recipe, call the library, print one line for a user's mistake.

Owns `app` (the typer app, `generate` and the run commands) and one module per command group: `templates`,
`cache`, `export` (`export` and `check`) and `hub` (`push`). The top layer: it may import anything in lcsynth,
and nothing in lcsynth imports it.
"""

from lcsynth.cli.app import main

__all__ = ["main"]
