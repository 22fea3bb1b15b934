r"""Reward functions for verifiable GRPO rows: score the last `\boxed{...}` of a completion against the gold.

A row looks like `{"prompt": [messages], "ground_truth": "answer" or ["answer", "alias"], "meta": {...}}`.
The core scorer is `keychain_reward`; `grpo_reward` / `grpo_f1_reward` adapt it to TRL's `GRPOTrainer`
(`reward_funcs=[...]`) and `compute_score` to verl's custom reward function.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "compute_score",
    "exact_match",
    "extract_answer",
    "f1",
    "format_ok",
    "grpo_f1_reward",
    "grpo_reward",
    "keychain_reward",
    "normalize_answer",
    "sub_em",
]

MAX_EXTRA_ANSWER_CHARS = 128
"""Strict format: how many characters longer than the longest gold a boxed answer may be."""
MAX_TRAILING_CHARS = 32
"""Strict format: how many non-whitespace characters may follow the box's closing brace."""

_THINK_END = "</think>"
_BOX_OPEN = re.compile(r"\\boxed\s*\{")
_BOX_WORD = re.compile(r"\\boxed(?![A-Za-z])")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_SPACE = re.compile(r"\s")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, and collapse whitespace (SQuAD style).

    >>> normalize_answer("  The Eiffel-Tower, in  Paris! ")
    'eiffeltower in paris'
    >>> normalize_answer("An apple a day")
    'apple day'
    """
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _answer_part(completion: str) -> str:
    """The text after the last `</think>`, or the whole completion when there is none."""
    return completion.rpartition(_THINK_END)[2]


def _boxes(text: str) -> list[tuple[str, int]]:
    r"""Every complete `\boxed{...}` in `text`, as (content, index just past the closing brace).

    Braces nest; escaped braces (`\{`, `\}`) are literal. A box whose braces never close is left out.
    """
    found: list[tuple[str, int]] = []
    for match in _BOX_OPEN.finditer(text):
        depth, i = 1, match.end()
        while i < len(text):
            char = text[i]
            if char == "\\":
                i += 2  # an escaped character never opens or closes a group
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    found.append((text[match.end() : i], i + 1))
                    break
            i += 1
    return found


def extract_answer(completion: str) -> str | None:
    r"""The content of the last complete `\boxed{...}`, searched after the last `</think>` if there is one.

    >>> extract_answer(r"so x = \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_answer(r"<think>maybe \boxed{3}</think> It is \boxed{4} or \boxed{5}")
    '5'
    >>> extract_answer(r"<think>maybe \boxed{3}</think> no box here") is None
    True
    """
    boxes = _boxes(_answer_part(completion))
    return boxes[-1][0] if boxes else None


def _golds(gold: str | Iterable[str] | None) -> list[str]:
    """The gold answers as a list of strings (a single string, a list, a tuple or a numpy array)."""
    if gold is None:
        return []
    if isinstance(gold, str):
        return [gold]
    return [str(g) for g in gold]


def sub_em(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 if a normalised gold is contained in the normalised prediction or vice versa, else 0.0.

    An empty normalised prediction or gold never matches (the empty string is a substring of everything).

    >>> sub_em("It was Marie Curie.", ["Curie", "Maria Sklodowska"])
    1.0
    >>> sub_em("", "Curie")
    0.0
    """
    pred = normalize_answer(prediction)
    if not pred:
        return 0.0
    for g in _golds(gold):
        norm = normalize_answer(g)
        if norm and (norm in pred or pred in norm):
            return 1.0
    return 0.0


def _f1_one(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    """Token-level F1 of two token lists."""
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Token-level F1 over normalised words, the best over the golds; 0.0 for an empty prediction.

    >>> f1("the red fox", "red dog")
    0.5
    """
    pred_tokens = normalize_answer(prediction).split()
    if not pred_tokens:
        return 0.0
    scores = [_f1_one(pred_tokens, toks) for toks in (normalize_answer(g).split() for g in _golds(gold)) if toks]
    return max(scores, default=0.0)


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold, else 0.0 (empty never matches)."""
    pred = normalize_answer(prediction)
    if not pred:
        return 0.0
    return 1.0 if any(pred == normalize_answer(g) for g in _golds(gold)) else 0.0


def format_ok(completion: str, gold: str | Sequence[str]) -> bool:
    r"""Whether the answer part (after the last `</think>`) is well formed for the strict reward.

    It must hold exactly one `\boxed`, and it is rejected when the boxed answer is more than
    `MAX_EXTRA_ANSWER_CHARS` characters longer than the longest gold, or when more than
    `MAX_TRAILING_CHARS` non-whitespace characters follow the box's closing brace.
    """
    answer_part = _answer_part(completion)
    if len(_BOX_WORD.findall(answer_part)) != 1:
        return False
    boxes = _boxes(answer_part)
    if not boxes:
        return False
    content, end = boxes[-1]
    longest = max((len(g.strip()) for g in _golds(gold)), default=0)
    if len(content.strip()) > longest + MAX_EXTRA_ANSWER_CHARS:
        return False
    return len(_SPACE.sub("", answer_part[end:])) <= MAX_TRAILING_CHARS


def keychain_reward(completion: str, ground_truth: str | Sequence[str], strict: bool = False) -> float:
    r"""Sub-EM of the boxed answer against the gold: 0.0 with no box, or in strict mode when `format_ok` fails.

    >>> keychain_reward(r"The key is \boxed{Blue Falcon}.", ["blue falcon", "falcon"])
    1.0
    >>> keychain_reward("The key is Blue Falcon.", "blue falcon")
    0.0
    """
    answer = extract_answer(completion)
    if answer is None:
        return 0.0
    if strict and not format_ok(completion, ground_truth):
        return 0.0
    return sub_em(answer, ground_truth)


def _content_text(content: Any) -> str:
    """A message's content as text; a list of parts (`{"type": "text", "text": ...}`) is joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _completion_text(completion: Any) -> str:
    """A TRL completion as text: a string as is, or the content of the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence) and completion:
        assistant = [m for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        last = assistant[-1] if assistant else completion[-1]
        return _content_text(last.get("content")) if isinstance(last, dict) else str(last)
    return ""


def grpo_reward(completions: Sequence[Any], ground_truth: Sequence[Any], **kwargs: Any) -> list[float]:
    r"""TRL `GRPOTrainer` reward: `keychain_reward` per completion (strings or conversational message lists).

    >>> grpo_reward([r"\boxed{42}", [{"role": "assistant", "content": "no box"}]], ["42", "42"])
    [1.0, 0.0]
    """
    return [keychain_reward(_completion_text(c), gt) for c, gt in zip(completions, ground_truth, strict=True)]


def grpo_f1_reward(completions: Sequence[Any], ground_truth: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL `GRPOTrainer` reward: token F1 of the boxed answer against the gold (0.0 when there is no box)."""
    scores = []
    for c, gt in zip(completions, ground_truth, strict=True):
        answer = extract_answer(_completion_text(c))
        scores.append(0.0 if answer is None else f1(answer, gt))
    return scores


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None) -> float:
    """Custom reward function for verl: `keychain_reward` of `solution_str` (gold: str, list or numpy array)."""
    gold = ground_truth if isinstance(ground_truth, str) else list(ground_truth)
    return keychain_reward(solution_str, gold)
