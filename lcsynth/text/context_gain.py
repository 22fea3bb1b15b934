"""How much a row's text depends on its long context (a LongFilter-style score, from backend log-probs).

The scored tokens are the answer of an SFT row (the chosen answer of a DPO row) or the last `tail_tokens`
of a pretraining text. Each is scored twice: with everything before it, and with only the `short_window`
tokens right before it. The gain is the mean per-token log-likelihood difference, in nats: how much the
distant context helps predict the text. A row whose prompt fits in the short window gains exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lcsynth.text.chat import ChatTemplate
from lcsynth.text.tokens import Tokenizer


@dataclass(frozen=True)
class ScoredText:
    """Tokens of a row as the model reads them, and where the scored part starts."""

    tokens: list[int]
    start: int


def encode_prompt(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of rendered chat text, whose markup must become the model's special tokens."""
    encode = getattr(tokenizer, "encode_special", tokenizer.encode)
    return encode(text)


def scored_text(kind: str, row: dict[str, Any], tokenizer: Tokenizer, template: ChatTemplate,
                tail_tokens: int) -> ScoredText | None:
    """The tokens to score for a row, or None for rows with nothing to score (GRPO rows have no answer)."""
    if kind == "pretrain":
        tokens = tokenizer.encode(row.get("text", ""))
        return ScoredText(tokens, max(len(tokens) - tail_tokens, 1)) if len(tokens) > 1 else None
    if kind == "sft":
        messages = list(row.get("messages") or [])
    elif kind == "dpo":
        messages = list(row.get("prompt") or []) + list(row.get("chosen") or [])[-1:]
    else:
        return None
    if not messages or messages[-1].get("role") != "assistant":
        return None
    prompt = encode_prompt(tokenizer, template.render(messages[:-1], add_generation_prompt=True))
    return ScoredText(prompt + tokenizer.encode(messages[-1]["content"]), len(prompt))


def mean(values: list[float]) -> float:
    """Arithmetic mean (0.0 for no values)."""
    return sum(values) / len(values) if values else 0.0


def short_view(text: ScoredText, short_window: int) -> ScoredText | None:
    """The same scored tokens seen through only `short_window` tokens of context; None when that is all of it.

    >>> short_view(ScoredText(list(range(10)), 6), 2)
    ScoredText(tokens=[4, 5, 6, 7, 8, 9], start=2)
    >>> short_view(ScoredText(list(range(10)), 6), 6) is None
    True
    """
    if text.start <= short_window:
        return None
    return ScoredText(text.tokens[text.start - short_window:], short_window)
