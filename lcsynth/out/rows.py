"""A finished run's rows read back: JSONL lines one at a time, and the tokens a row says it took."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Every row of a JSONL file, one at a time (a shard can be larger than memory)."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def row_tokens(meta: dict[str, Any]) -> int | None:
    """Tokens a row's conversation took, from the backend's own counts (prompt read + text written).

    A preference pair counts its prompt and the longer of its two answers.

    >>> row_tokens({"prompt_tokens": 100, "chosen_tokens": 7, "rejected_tokens": 9})
    109
    """
    if isinstance(meta.get("n_tokens"), int):
        return meta["n_tokens"]
    prompt = meta.get("prompt_tokens")
    written = meta.get("answer_tokens", meta.get("output_tokens"))
    if written is None and isinstance(meta.get("chosen_tokens"), int) and isinstance(meta.get("rejected_tokens"), int):
        written = max(meta["chosen_tokens"], meta["rejected_tokens"])
    return prompt + written if isinstance(prompt, int) and isinstance(written, int) else None
