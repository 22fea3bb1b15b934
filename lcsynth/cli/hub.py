"""`lcsynth push`: publish a finished run as a Hugging Face dataset, or write the folder that would be uploaded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

out = Console(soft_wrap=True, highlight=False)


def push(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    repo: Annotated[str, typer.Option(help="The dataset repo, owner/name (created if missing).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    revision: Annotated[str | None, typer.Option(help="Branch to commit to (created if missing).")] = None,
    split: Annotated[str, typer.Option(help="Fractions per split, e.g. train=0.98,test=0.02.")] = "train=1",
    license_id: Annotated[str | None, typer.Option("--license", help="License id for the card (default: the "
                                                   "recipe's card.license, else 'other').")] = None,
    language: Annotated[list[str] | None, typer.Option(help="Language code for the card, repeatable (default: the "
                                                       "recipe's card.language, else en).")] = None,
    dry_run: Annotated[Path | None, typer.Option("--dry-run", help="Write the exact upload folder here and contact "
                                                 "nothing.")] = None,
) -> None:
    """Publish a run on the Hugging Face Hub: Parquet per kind and split plus a dataset card, in one commit."""
    from lcsynth.out.export import parse_splits
    from lcsynth.out.hub import dry_run as write_folder
    from lcsynth.out.hub import push as push_run

    options = {"splits": parse_splits(split), "license_id": license_id, "languages": language}
    if dry_run is not None:
        result = write_folder(run_dir, dry_run, repo, **options)
        out.print(f"wrote {len(result.files)} files to {dry_run} (nothing was sent): " + ", ".join(result.files))
        return
    result = push_run(run_dir, repo, private=private, revision=revision, **options)
    rows = "; ".join(f"{kind}: " + ", ".join(f"{s} {n}" for s, n in splits.items())
                     for kind, splits in result.counts.items())
    if result.changed:
        out.print(f"pushed {len(result.files)} files ({rows}) to {result.url} in commit {result.commit}")
    else:
        out.print(f"unchanged: {result.url} already holds these files ({rows}); head {result.commit}")
