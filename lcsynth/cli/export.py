"""`lcsynth export` and `lcsynth check`: a finished run in trainers' shapes, and rows over a trainer's limit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

out = Console(soft_wrap=True)

TRAINER_HINTS = {
    "sft": "SFTConfig(max_length={max_length})",
    "dpo": "DPOConfig(max_length={max_length})",
    "grpo": "prompts up to {max_prompt_length} tokens (verl data.max_prompt_length={max_prompt_length}; "
            "TRL's GRPOTrainer keeps whole prompts)",
    "pretrain": "sequence length >= {max_length} (+1 where the trainer appends an end-of-text token, as TRL's "
                "SFTTrainer does)",
}


def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    to: Annotated[str, typer.Option("--to", help="trl | verl | jsonl | parquet")] = "trl",
    split: Annotated[str, typer.Option(help="Fractions per split, e.g. train=0.98,test=0.02.")] = "train=1",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write (RUN_DIR/export/FORMAT).")] = None,
    data_source: Annotated[str | None, typer.Option(help="verl: the rows' data_source, which verl's reward "
                                                         "dispatch reads (default lcsynth/METHOD).")] = None,
) -> None:
    """Write a run's rows in a trainer's shape, one file per kind and split, and the length limits they need."""
    from lcsynth.errors import ConfigError
    from lcsynth.out.export import export_run, parse_splits, run_kinds, trainer_settings
    from lcsynth.out.runfolder import hold

    if to not in ("trl", "verl", "jsonl", "parquet"):
        raise ConfigError(f"--to: '{to}' is not one of trl, verl, jsonl, parquet")
    run_kinds(run_dir)  # a folder that is no finished run fails before anything is written
    target = out_dir or run_dir / "export" / to
    with hold(run_dir):  # no run rewrites the folder meanwhile, and no second export writes the same files
        counts = export_run(run_dir, to, parse_splits(split), target, data_source)  # type: ignore[arg-type]
    for kind, splits in counts.items():
        out.print(f"{kind}: " + ", ".join(f"{name} {n}" for name, n in splits.items()) + f" → {target / kind}")
    for kind, limits in trainer_settings(run_dir).items():
        out.print(f"{kind}: no row is cut with {TRAINER_HINTS[kind].format(**limits)}")


def check(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    max_length: Annotated[int, typer.Option(help="The trainer's length limit in tokens.")] = 1024,
    tokenizer: Annotated[str | None, typer.Option(help="Recount every row with the trainer's tokenizer: 'bundled', "
                                                       "a .gguf file or a tokenizer folder (default: the run's "
                                                       "recorded counts).")] = None,
) -> None:
    """Count rows longer than a trainer's limit (TRL defaults to 1,024); exit 1 if any would be cut."""
    from lcsynth.out.export import over_limit, run_kinds, trainer_tokenizer

    run_kinds(run_dir)  # a folder that is no finished run fails before a tokenizer loads
    counter = trainer_tokenizer(tokenizer) if tokenizer else None
    cut = 0
    for kind, (over, counted, longest) in over_limit(run_dir, max_length, counter).items():
        longest_note = f" (longest {longest})" if counted else ""
        out.print(f"{kind}: {over} of {counted} rows are over {max_length} tokens{longest_note}")
        cut += over
    if cut:
        raise typer.Exit(1)
