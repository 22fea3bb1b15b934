"""lcsynth: long-context training data from real long documents.

The packages, from the top down (each imports only those below it; `lint-imports` checks):
`cli` (the command), `run` (plan, runner, resume, executors), `out` (rows, filters, manifest, report, export,
card, Hub), `methods`, `prompts` (templates, schemas, parsing), `backends` (models and the request cache) beside
`corpus` (readers, documents, token store), `text` (tokenizers, chat templates, lengths), and the base modules
`config`, `counters`, `redaction`, `registry`, `rewards`, `errors`, `version`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lcsynth.version import __version__

if TYPE_CHECKING:
    from lcsynth.config import Recipe
    from lcsynth.run.local import RunSummary

__all__ = ["__version__", "load", "run_recipe"]


def load(run_dir: str) -> object:
    """A finished run as a `datasets.DatasetDict`, one entry per row kind (see `lcsynth.out.export.load`)."""
    from lcsynth.out.export import load as load_run

    return load_run(run_dir)


async def run_recipe(recipe: Recipe, **options: Any) -> RunSummary:
    """Run a recipe in this process (see `lcsynth.run.local.run_recipe` for the options)."""
    from lcsynth.run.local import run_recipe as run_locally

    return await run_locally(recipe, **options)
