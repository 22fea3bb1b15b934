"""Training files for every arm, from lcsynth's run folders and, for the controls, from the raw corpus.

Rows become TRL prompt/completion pairs (SFT, loss on the answer) or `{"text"}` rows (language modelling):
- LongMagpie SFT rows: the last assistant turn is the completion;
- LongPO DPO rows: the chosen answer is the completion (the long-context prompt);
- KeyChain rows come as SFT already (`form: sft`: the chain followed, then the boxed gold, written by lcsynth);
- verifiable-QA GRPO rows: the gold answer, boxed as their prompts ask;
- NExtLong and Untie-the-Knots pretraining rows: `text`.
The naive controls cut the same corpus into plain text chunks of the same token lengths as the rows they stand
against, so a gain of an lcsynth arm over its control cannot come from long text alone.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

Counter_ = Callable[[Sequence[str]], list[int]]


def rows(run_dir: Path, kind: str) -> Iterator[dict[str, Any]]:
    """Rows of one kind from a finished lcsynth run folder."""
    for shard in sorted(run_dir.glob(f"{kind}-*.jsonl")):
        with shard.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def boxed(prompt: list[dict[str, str]], answer: str) -> str:
    r"""The answer in the form the prompt asks for: `\boxed{...}` when the prompt mentions it."""
    asks_box = any("\\boxed" in m["content"] for m in prompt)
    return f"\\boxed{{{answer}}}" if asks_box else answer


def first_answer(truth: Any) -> str:
    """The first accepted answer of a `ground_truth` value (a string or a list of them)."""
    return truth[0] if isinstance(truth, list) else str(truth)


def sft_pair(row: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """A prompt/completion pair from an lcsynth row, or None for rows that have no SFT form."""
    method = row.get("meta", {}).get("method")
    if kind == "sft":
        return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:], "method": method}
    if kind == "dpo":
        return {"prompt": row["prompt"], "completion": row["chosen"], "method": method}
    if kind == "grpo" and method == "verifiable":
        answer = boxed(row["prompt"], first_answer(row["ground_truth"]))
        return {"prompt": row["prompt"], "completion": [{"role": "assistant", "content": answer}], "method": method}
    return None


def gain(row: dict[str, Any]) -> float | None:
    """The row's measured context gain (nats per token), if it has one."""
    measured = row.get("meta", {}).get("context_gain")
    return None if measured is None else float(measured["gain"])


def written_pairs(run_dir: Path, min_gain: float | None) -> list[dict[str, Any]]:
    """SFT pairs of the written run; with `min_gain`, LongMagpie/LongPO rows under it are left out."""
    out = []
    for kind in ("sft", "dpo", "grpo"):
        for row in rows(run_dir, kind):
            pair = sft_pair(row, kind)
            if pair is None:
                continue
            measured = gain(row)
            if min_gain is not None and kind in ("sft", "dpo") and measured is not None and measured < min_gain:
                continue
            pair["gain"] = measured
            out.append(pair)
    return out


def pair_tokens(pairs: Sequence[dict[str, Any]], count: Counter_) -> list[int]:
    """Token counts of prompt + completion contents (the chat template's few tokens aside)."""
    texts = [" ".join(m["content"] for m in p["prompt"] + p["completion"]) for p in pairs]
    return count(texts) if texts else []


def corpus_chunks(texts: Iterable[str], lengths: Sequence[int], count: Counter_, rng: random.Random,
                  tokens_per_char: float) -> list[dict[str, str]]:
    """Plain text rows of about each of `lengths` tokens, cut from documents read in a shuffled order.

    Documents are concatenated (blank line between) into one stream that is cut at the lengths asked for,
    so long rows exist even where documents are short, as a naive long-data pipeline would make them.
    """
    stream = list(texts)
    rng.shuffle(stream)
    joined = "\n\n".join(stream)
    out, at = [], rng.randrange(max(1, len(joined) // 2))
    for length in lengths:
        chars = int(length / tokens_per_char)
        if at + chars > len(joined):
            at = 0
        piece = joined[at : at + chars]
        at += chars
        out.append({"text": piece})
    measured = count([r["text"] for r in out]) if out else []
    over = [(row, want, got) for row, want, got in zip(out, lengths, measured, strict=True) if got > want]
    for _ in range(4):  # cut rows where the ratio overshot, until each fits (a cut can re-merge a token or two)
        if not over:
            break
        for row, want, got in over:
            row["text"] = row["text"][: int(len(row["text"]) * want / got) - 1]
        recounted = count([row["text"] for row, _, _ in over])
        over = [(row, want, got) for (row, want, _), got in zip(over, recounted, strict=True) if got > want]
    return out


def chars_per_token(texts: Sequence[str], count: Counter_) -> float:
    """Tokens per character of a sample of `texts`."""
    sample = [t[:20000] for t in texts[:200]]
    return sum(count(sample)) / max(1, sum(len(t) for t in sample))


def take(items: Sequence[Any], n: int, rng: random.Random) -> list[Any]:
    """`n` items sampled without replacement (all of them, shuffled, when there are fewer)."""
    items = list(items)
    rng.shuffle(items)
    return items[:n]


def write(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSONL keeping only training fields; return how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            keep = {k: r[k] for k in ("prompt", "completion", "text") if k in r}
            f.write(json.dumps(keep, ensure_ascii=False) + "\n")
            n += 1
    return n
