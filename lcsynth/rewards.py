r"""Reward functions for verifiable GRPO rows: score the last `\boxed{...}` of a completion against the gold.

A row looks like `{"prompt": [messages], "ground_truth": "answer" or ["answer", "alias"], "meta": {...}}`.
The reward GRPO should train on is `keychain_reward` (any row kind: KeyChain, verifiable QA, chunk
tracing): it pays only a boxed answer that *contains* a gold answer on word boundaries, after
normalisation, and scales the pay down as the answer grows beyond the gold, so listing candidates
earns no more than guessing one. `f1` is a separate, softer reward (partial credit for shared words).
`grpo_reward` / `grpo_f1_reward` adapt them to TRL's `GRPOTrainer` and `compute_score` to verl.
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
MAX_ANSWER_CHARS = 4096
"""A boxed answer this many characters longer than the longest gold scores 0 without being read."""
MIN_ANSWER_CHARS = 2
"""A normalised answer shorter than this (empty, one letter or digit) never scores."""
FILLER_WORDS = frozenset({"answer", "final", "is", "was", "are", "were", "it", "so", "thus", "therefore",
                          "hence", "valid", "question", "key", "value"})
"""Words a boxed answer may add to the gold at no cost ("the answer is …"); any other extra word dilutes the pay."""

_THINK_OPEN, _THINK_END = "<think>", "</think>"
_BOX_TOKENS = re.compile(r"\\boxed\s*\{|\\.|[{}]", re.S)
_BOX_WORD = re.compile(r"\\boxed(?![A-Za-z])")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textit|texttt|mathrm|mathbf|mbox|operatorname)\s*(?=\{)")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_NON_WORD = re.compile(r"[^\w\s]|_")
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


def answer_forms(text: str) -> tuple[str, str]:
    r"""Two normalised word forms of an answer: punctuation as spaces, and punctuation removed.

    Both lower-case, drop articles and LaTeX text wrappers, and put single spaces between words, so
    `" " + gold + " " in " " + prediction + " "` is a match on word boundaries. The first form
    finds `Curie` in `Marie-Curie`, the second `BF-7` in `bf7`.

    >>> answer_forms(r"\text{Marie-Curie}'s BF-7")
    ('marie curie s bf 7', 'mariecuries bf7')
    """
    text = _LATEX_WRAPPER.sub("", text).lower()
    spaced = " ".join(_ARTICLES.sub(" ", _NON_WORD.sub(" ", text)).split())
    removed = " ".join(_ARTICLES.sub(" ", _NON_WORD.sub("", text)).split())
    return spaced, removed


def _answer_part(completion: str) -> str | None:
    """The text after the last `</think>`; the whole completion if it has no think tags; None mid-thought.

    A completion that opens `<think>` and never closes it stopped while reasoning, so it has no answer.
    """
    before, end, after = completion.rpartition(_THINK_END)
    if end:
        return None if _THINK_OPEN in after else after
    return None if _THINK_OPEN in completion else completion


def _boxes(text: str) -> list[tuple[int, int, int]]:
    r"""Every complete `\boxed{...}` in `text`, as (content start, content end, index past the closing brace).

    One linear pass: braces nest, escaped braces (`\{`, `\}`) are literal, a box whose braces never close
    is left out. Sorted by where the boxes open.
    """
    stack: list[tuple[bool, int]] = []
    found = []
    for match in _BOX_TOKENS.finditer(text):
        token = match.group()
        if token == "}":
            if stack:
                is_box, start = stack.pop()
                if is_box:
                    found.append((start, match.start(), match.end()))
        elif token == "{" or token.startswith("\\boxed"):
            stack.append((token != "{", match.end()))
    return sorted(found)


def extract_answer(completion: str) -> str | None:
    r"""The content of the last complete `\boxed{...}`, searched after the last `</think>` if there is one.

    >>> extract_answer(r"so x = \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_answer(r"<think>maybe \boxed{3}</think> It is \boxed{4} or \boxed{5}")
    '5'
    >>> extract_answer(r"<think>maybe \boxed{3}</think> no box here") is None
    True
    """
    part = _answer_part(completion)
    boxes = _boxes(part) if part else []
    if not boxes:
        return None
    start, end, _ = boxes[-1]
    return part[start:end]  # type: ignore[index]


def _golds(gold: str | Iterable[str] | None) -> list[str]:
    """The gold answers as a list of strings (a single string, a list, a tuple or a numpy array)."""
    if gold is None:
        return []
    if isinstance(gold, str):
        return [gold]
    return [str(g) for g in gold]


def _too_short(prediction: str) -> bool:
    """Whether a prediction normalises to fewer than `MIN_ANSWER_CHARS` characters."""
    return len(answer_forms(prediction)[1].replace(" ", "")) < MIN_ANSWER_CHARS


def _contains(outer: str, inner: str) -> bool:
    """Whether the words of `inner` occur, in a row, among the words of `outer`."""
    return bool(inner) and f" {inner} " in f" {outer} "


def copies_question(prediction: str, question: str | None, gold: str | Sequence[str]) -> bool:
    """Whether a prediction restates the question: holds all of it, or quotes part of it that is no gold.

    >>> copies_question("Which river flows through Paris?", "Which river flows through Paris?", "Seine")
    True
    >>> copies_question("Arthur's Magazine", "Which came first, Arthur's Magazine or First for Women?",
    ...                 "Arthur's Magazine")
    False
    """
    if not question:
        return False
    pred, asked = answer_forms(prediction)[0], answer_forms(question)[0]
    if len(asked.split()) >= 2 and _contains(pred, asked):
        return True
    return _contains(asked, pred) and all(answer_forms(g)[0] != pred for g in _golds(gold))


def _free(word: str) -> bool:
    """Whether an extra word costs nothing: a filler word, or one character (markup such as `<D>`)."""
    return len(word) < 2 or word in FILLER_WORDS


def _paid(prediction: str, gold: str) -> float:
    """The pay of one prediction against one gold: 0 unless it contains the gold, then gold words / answer words.

    Filler words ("the answer is") and one-character words beyond those of the gold are not counted.
    The better of the two word forms (see `answer_forms`) counts.
    """
    best = 0.0
    for pred, truth in zip(answer_forms(prediction), answer_forms(gold), strict=True):
        if len(truth.replace(" ", "")) < MIN_ANSWER_CHARS or not _contains(pred, truth):
            continue
        pred_words, gold_words = pred.split(), truth.split()
        fillers = max(0, sum(map(_free, pred_words)) - sum(map(_free, gold_words)))
        best = max(best, min(1.0, len(gold_words) / max(len(pred_words) - fillers, 1)))
    return best


def sub_em(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 if a normalised gold occurs in the normalised prediction on word boundaries, else 0.0.

    Only gold-in-prediction counts (LoongRL's rule), never prediction-in-gold; a prediction of fewer
    than two characters never matches. This is the binary match, without the length scaling of
    `keychain_reward`.

    >>> sub_em("It was Marie Curie.", ["Curie", "Maria Sklodowska"])
    1.0
    >>> sub_em("Curie", "Marie Curie")
    0.0
    """
    if _too_short(prediction):
        return 0.0
    return 1.0 if any(_paid(prediction, g) > 0 for g in _golds(gold)) else 0.0


def _f1_one(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    """Token-level F1 of two token lists."""
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Token-level F1 over normalised words (punctuation removed), the best over the golds (LongBench's QA metric).

    It gives partial credit to a prediction that holds part of the gold, so it suits evaluation or a
    secondary reward, not GRPO on its own. A prediction under two characters scores 0.0.

    >>> f1("the red fox", "red dog")
    0.5
    """
    if _too_short(prediction):
        return 0.0
    pred_tokens = answer_forms(prediction)[1].split()
    scores = [_f1_one(pred_tokens, toks) for toks in (answer_forms(g)[1].split() for g in _golds(gold)) if toks]
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
    if answer_part is None or len(_BOX_WORD.findall(answer_part)) != 1:
        return False
    boxes = _boxes(answer_part)
    if not boxes:
        return False
    start, end, past = boxes[-1]
    longest = max((len(g.strip()) for g in _golds(gold)), default=0)
    if len(answer_part[start:end].strip()) > longest + MAX_EXTRA_ANSWER_CHARS:
        return False
    return len(_SPACE.sub("", answer_part[past:])) <= MAX_TRAILING_CHARS


def keychain_reward(completion: str, ground_truth: str | Sequence[str], strict: bool = False,
                    question: str | None = None) -> float:
    r"""The GRPO reward: the best `_paid` over the golds of the last boxed answer, in [0, 1].

    0.0 with no box, an answer under two characters, one that restates `question` (when given), one
    more than `MAX_ANSWER_CHARS` longer than the gold, or in strict mode when `format_ok` fails.

    >>> keychain_reward(r"The key is \boxed{Blue Falcon}.", ["blue falcon", "falcon"])
    1.0
    >>> keychain_reward(r"\boxed{Falcon}", "Blue Falcon")
    0.0
    >>> keychain_reward(r"\boxed{Red Eagle or Blue Falcon}", "Blue Falcon")
    0.4
    """
    answer = extract_answer(completion)
    golds = _golds(ground_truth)
    if answer is None or not golds or _too_short(answer):
        return 0.0
    if len(answer) > max(len(g) for g in golds) + MAX_ANSWER_CHARS:
        return 0.0
    if (strict and not format_ok(completion, golds)) or copies_question(answer, question, golds):
        return 0.0
    return max(_paid(answer, g) for g in golds)


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

    A `question` column (exported by `lcsynth export --to trl`) reaches it as a keyword and is used.

    >>> grpo_reward([r"\boxed{42}", [{"role": "assistant", "content": "no box"}]], ["42", "42"])
    [1.0, 0.0]
    """
    questions = kwargs.get("question") or [None] * len(completions)
    return [keychain_reward(_completion_text(c), gt, question=q)
            for c, gt, q in zip(completions, ground_truth, questions, strict=True)]


def grpo_f1_reward(completions: Sequence[Any], ground_truth: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL `GRPOTrainer` reward: token F1 of the boxed answer against the gold (0.0 when there is no box)."""
    scores = []
    for c, gt in zip(completions, ground_truth, strict=True):
        answer = extract_answer(_completion_text(c))
        scores.append(0.0 if answer is None else f1(answer, gt))
    return scores


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None,
                  **kwargs: Any) -> float:
    """Custom reward function for verl: `keychain_reward` of `solution_str` (gold: str, list or numpy array).

    `extra_info["question"]`, which `lcsynth export --to verl` writes, lets it refuse a restated question.
    Other keywords verl may pass (`sandbox_fusion_url`, …) are ignored. Configure it with
    `custom_reward_function.path=<site-packages>/lcsynth/rewards.py` and `custom_reward_function.name=compute_score`.
    """
    gold = ground_truth if isinstance(ground_truth, str) else list(ground_truth)
    question = extra_info.get("question") if isinstance(extra_info, dict) else None
    return keychain_reward(solution_str, gold, question=question if isinstance(question, str) else None)
