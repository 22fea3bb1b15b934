"""Exports of a finished run in the shapes trainers read directly: TRL, verl, plain JSONL and Parquet.

Rows keep their kind's columns (SFT `messages`; DPO `prompt`/`chosen`/`rejected`; GRPO `prompt` +
`ground_truth`; pretrain `text`). `meta` differs from method to method, so in Parquet it is a JSON string
column; the TRL shape leaves it out (trainers pass unknown columns to reward functions or collators), and
verl's GRPO layout moves it into `extra_info`. Splits are drawn from a hash of each row's identity, so a
row lands in the same split however often the run is exported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from lcsynth.errors import ConfigError, InputError
from lcsynth.out.rows import read_jsonl, row_tokens

Format = Literal["jsonl", "parquet", "trl", "verl"]
KINDS = ("sft", "dpo", "grpo", "pretrain")
# Columns a kind's rows carry besides meta, in order.
COLUMNS = {"sft": ["messages"], "dpo": ["prompt", "chosen", "rejected", "short_prompt"],
           "grpo": ["prompt", "ground_truth"], "pretrain": ["text"]}


def parse_splits(text: str) -> dict[str, float]:
    """Read `train=0.98,test=0.02` into fractions that sum to 1.

    >>> parse_splits("train=0.9,test=0.1")
    {'train': 0.9, 'test': 0.1}
    """
    splits: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            splits[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--split: '{part}' is not name=fraction (e.g. train=0.98,test=0.02)") from None
    if not splits or any(not n or f <= 0 for n, f in splits.items()) or abs(sum(splits.values()) - 1) > 1e-6:
        raise ConfigError(f"--split: fractions must be positive and sum to 1, got {text}")
    return splits


def row_key(row: dict[str, Any]) -> str:
    """A row's identity for splitting: its method, seed, source and sample (falls back to its content)."""
    meta = row.get("meta", {})
    identity = [meta.get(k) for k in ("method", "seed", "doc_id", "qa_id", "source_doc_id", "sample", "tracing_row")]
    if not any(v is not None for v in identity):
        identity = [json.dumps({k: v for k, v in row.items() if k != "meta"}, sort_keys=True)]
    return json.dumps(identity)


def split_of(row: dict[str, Any], splits: dict[str, float]) -> str:
    """The split a row belongs to: a stable hash of its identity, cut by the cumulative fractions."""
    point = int.from_bytes(hashlib.sha256(row_key(row).encode()).digest()[:8], "big") / 2**64
    total = 0.0
    for name, fraction in splits.items():
        total += fraction
        if point < total:
            return name
    return name


def iter_rows(run_dir: Path, kind: str) -> Iterator[dict[str, Any]]:
    """Every row of one kind in a run, in shard order."""
    for shard in sorted(run_dir.glob(f"{kind}-*.jsonl")):
        yield from read_jsonl(shard)


def run_kinds(run_dir: Path) -> list[str]:
    """The kinds of rows a finished run wrote."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{run_dir}: no readable manifest.json (is this a finished run?)") from None
    return [k for k in KINDS if manifest["counts"]["rows"].get(k)]


def shaped(row: dict[str, Any], kind: str, fmt: Format, index: int, split: str,
           data_source: str | None = None) -> dict[str, Any]:
    """One row in the export's shape.

    verl's RL layout follows its own examples (gsm8k): `data_source`, `prompt`, `ability`,
    `reward_model: {style: rule, ground_truth}` and `extra_info: {split, index, question}` (plus `meta`).
    `data_source` defaults to `lcsynth/<method>`; verl passes it to the reward function it dispatches on.
    A TRL GRPO row gets a `question` column, which TRL hands to `rewards.grpo_reward` as a keyword.
    """
    meta = row.get("meta", {})
    columns = {c: row[c] for c in COLUMNS[kind] if c in row}
    if fmt == "jsonl":
        return row
    if fmt == "parquet":
        return {**columns, "meta": json.dumps(meta, ensure_ascii=False)}
    if fmt == "trl":
        return {**columns, "question": meta.get("question") or ""} if kind == "grpo" else columns
    extra = {"split": split, "index": index, "meta": json.dumps(meta, ensure_ascii=False)}
    if kind == "grpo":  # verl's RL layout
        truth = row["ground_truth"]
        return {"data_source": data_source or f"lcsynth/{meta.get('method', 'unknown')}", "prompt": row["prompt"],
                "ability": "longcontext_qa" if meta.get("method") == "keychain" else "long_context",
                "reward_model": {"style": "rule", "ground_truth": [truth] if isinstance(truth, str) else truth},
                "extra_info": {"split": split, "index": index, "question": meta.get("question") or "",
                               "meta": extra["meta"]}}
    return {**columns, "extra_info": extra}


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through a temporary file beside it, fsynced and renamed: readers see the old file or the new."""
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as JSON lines."""
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as one Parquet file (pyarrow infers the nested types)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def export_run(run_dir: Path, fmt: Format, splits: dict[str, float] | None = None,
               out: Path | None = None, data_source: str | None = None) -> dict[str, dict[str, int]]:
    """Write `run_dir`'s rows in `fmt` under `out` (default RUN_DIR/export/FMT): KIND/SPLIT.(jsonl|parquet).

    Returns row counts per kind and split. Rows are read one kind at a time. `data_source` overrides
    the verl rows' `data_source` (e.g. `custom_longcontextqa_lcsynth` for LoongRL's verl reward dispatch).
    """
    splits = splits or {"train": 1.0}
    out = out or run_dir / "export" / fmt
    counts: dict[str, dict[str, int]] = {}
    for kind in run_kinds(run_dir):
        by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in splits}
        for row in iter_rows(run_dir, kind):
            split = split_of(row, splits)
            by_split[split].append(shaped(row, kind, fmt, len(by_split[split]), split, data_source))
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for split, rows in by_split.items():
            if not rows:
                continue
            if fmt == "jsonl":
                write_atomically(folder / f"{split}.jsonl", lambda path, rows=rows: write_jsonl(rows, path))
            else:
                write_atomically(folder / f"{split}.parquet", lambda path, rows=rows: write_parquet(rows, path))
        counts[kind] = {split: len(rows) for split, rows in by_split.items() if rows}
    return counts


def row_lengths(run_dir: Path, kind: str) -> list[int]:
    """Tokens each row of a kind takes in the model's tokenizer, from its meta; rows without a count are skipped."""
    return [n for n in (row_tokens(r.get("meta", {})) for r in iter_rows(run_dir, kind)) if n is not None]


def length_limit(kind: str, longest: int) -> dict[str, int]:
    """The trainer setting under which a kind's longest row is not cut: GRPO limits prompts, the rest whole rows."""
    return {"max_prompt_length" if kind == "grpo" else "max_length": longest}


def trainer_settings(run_dir: Path) -> dict[str, dict[str, int]]:
    """The smallest trainer length limits under which no row of the run is cut, per kind."""
    settings: dict[str, dict[str, int]] = {}
    for kind in run_kinds(run_dir):
        lengths = row_lengths(run_dir, kind)
        if lengths:
            settings[kind] = length_limit(kind, max(lengths))
    return settings


def trainer_tokenizer(spec: str) -> Any:
    """The tokenizer a trainer will use: `bundled` (the embedded model's GGUF), a `.gguf` file or a tokenizer folder."""
    from lcsynth.text.tokens import HFTokenizer, LlamaCppTokenizer

    if spec == "bundled":
        from lcsynth.backends.llamacpp import bundled_gguf

        return LlamaCppTokenizer.from_gguf(str(bundled_gguf()))
    path = Path(spec)
    if spec.endswith(".gguf") and path.is_file():
        return LlamaCppTokenizer.from_gguf(spec)
    if path.is_dir():
        return HFTokenizer(spec)
    raise ConfigError(f"--tokenizer: '{spec}' is neither 'bundled', a .gguf file nor a tokenizer folder on disk")


def recount(kind: str, row: dict[str, Any], tokenizer: Any, template: Any) -> int:
    """Tokens a trainer's tokenizer makes of a row.

    That is the chat-rendered conversation (of a DPO pair, the longer side; of a GRPO row, the prompt with the
    assistant header that generation starts from), or a pretraining row's text.
    """
    from lcsynth.text.context_gain import encode_prompt

    if kind == "pretrain":
        return len(tokenizer.encode(row["text"]))
    if kind == "sft":
        return len(encode_prompt(tokenizer, template.render(row["messages"], add_generation_prompt=False)))
    if kind == "dpo":
        return max(len(encode_prompt(tokenizer, template.render(row["prompt"] + row[side],
                                                                add_generation_prompt=False)))
                   for side in ("chosen", "rejected"))
    return len(encode_prompt(tokenizer, template.render(row["prompt"], add_generation_prompt=True)))


def counted_lengths(run_dir: Path, kind: str, tokenizer: Any = None) -> list[int]:
    """Row lengths of a kind: recounted with `tokenizer` when given, else the counts the run recorded."""
    if tokenizer is None:
        return row_lengths(run_dir, kind)
    from lcsynth.text.chat import template_for_tokenizer

    template = template_for_tokenizer(tokenizer) if kind != "pretrain" else None
    return [recount(kind, row, tokenizer, template) for row in iter_rows(run_dir, kind)]


def over_limit(run_dir: Path, max_length: int, tokenizer: Any = None) -> dict[str, tuple[int, int, int]]:
    """Per kind: (rows longer than `max_length` tokens, rows counted, longest row; 0 when none was counted)."""
    report = {}
    for kind in run_kinds(run_dir):
        lengths = counted_lengths(run_dir, kind, tokenizer)
        report[kind] = (sum(n > max_length for n in lengths), len(lengths), max(lengths, default=0))
    return report


def load(run_dir: str | Path) -> Any:
    """A finished run as a `datasets.DatasetDict`, one entry per row kind (meta as a JSON string column)."""
    import datasets

    run_dir = Path(run_dir)

    def rows_of(kind: str) -> Iterator[dict[str, Any]]:
        for row in iter_rows(run_dir, kind):
            yield shaped(row, kind, "parquet", 0, "train")

    return datasets.DatasetDict({kind: datasets.Dataset.from_list(list(rows_of(kind))) for kind in run_kinds(run_dir)})
