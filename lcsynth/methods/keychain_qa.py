"""QA items for KeyChain: reading QA files (plain or multi-hop), decoy questions, guessable answers, SFT answers.

A QA line holds `question`, `answer` or `answers` (plus MuSiQue's `answer_aliases`), and its evidence
as `paragraphs` or `context`: strings, HotpotQA / 2WikiMultihopQA `[title, [sentences]]` pairs, or
MuSiQue-style `{title, paragraph_text | text, is_supporting}` objects. HotpotQA's `supporting_facts`
(`[[title, sentence], ...]`) mark the supporting paragraphs. Each item keeps its paragraphs in
`meta["passages"]` for the `passages` layout.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lcsynth.corpus.readers import Document, jsonl_objects
from lcsynth.errors import InputError
from lcsynth.rewards import MIN_ANSWER_CHARS, answer_forms

log = logging.getLogger(__name__)
SEPARATOR = "\n\n"
YES_NO = frozenset({"yes", "no"})


def paragraph_text(paragraph: Any) -> str:
    r"""A paragraph as text: a string, or HotpotQA's `[title, [sentence, ...]]` as the title over its sentences.

    >>> paragraph_text(["Paris", ["Paris is a city.", " It is in France."]])
    'Paris\nParis is a city. It is in France.'
    """
    if isinstance(paragraph, str):
        return paragraph
    if isinstance(paragraph, (list, tuple)) and len(paragraph) == 2 and isinstance(paragraph[1], list):
        return f"{paragraph[0]}\n" + "".join(map(str, paragraph[1]))
    if isinstance(paragraph, dict):  # {"title": ..., "text"/"paragraph_text": ...}
        body = paragraph.get("text", paragraph.get("paragraph_text", ""))
        return f"{paragraph['title']}\n{body}" if paragraph.get("title") else str(body)
    return str(paragraph)


def _title(paragraph: Any) -> str | None:
    if isinstance(paragraph, (list, tuple)) and len(paragraph) == 2:
        return str(paragraph[0])
    return str(paragraph["title"]) if isinstance(paragraph, dict) and paragraph.get("title") else None


def item_passages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A QA line's paragraphs as `{"text", "supporting"}`; without any marks every paragraph is supporting."""
    evidence = row.get("paragraphs", row.get("context", []))
    paragraphs = evidence if isinstance(evidence, list) else [evidence] if evidence else []
    facts = {str(f[0]) for f in row.get("supporting_facts") or [] if isinstance(f, (list, tuple)) and f}
    marked = [bool(p.get("is_supporting")) if isinstance(p, dict) else _title(p) in facts for p in paragraphs]
    if not any(marked):
        marked = [True] * len(paragraphs)
    return [{"text": paragraph_text(p).strip(), "supporting": m} for p, m in zip(paragraphs, marked, strict=True)]


def load_qa(path: str) -> Iterator[Document]:
    """QA items from JSONL: question, answer(s) (and aliases), optional paragraphs/context (the evidence), id."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"keychain qa: {file} does not exist")
    for number, row in jsonl_objects(file):
        answers = row.get("answers", row.get("answer"))
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(row.get("question"), str) or not answers or not all(isinstance(a, str) for a in answers):
            raise InputError(f"{file}:{number}: a QA line needs 'question' and 'answer' (or 'answers')")
        aliases = [a for a in row.get("answer_aliases") or [] if isinstance(a, str) and a not in answers]
        passages = item_passages(row)
        yield Document(str(row.get("id", row.get("_id", f"{file.stem}:{number}"))),
                       SEPARATOR.join(p["text"] for p in passages),
                       {"question": row["question"], "answers": [*answers, *aliases],
                        "source_doc": row.get("source_doc"), "passages": passages})


def guessable(question: str, answers: Sequence[str]) -> str | None:
    """Why an answer can be had without reading the context, or None.

    Answers under two characters, yes/no, and answers the question already contains (a choice
    between two named options, a function named in full) pay a context-free guesser.

    >>> guessable("Which came first, Arthur's Magazine or First for Women?", ["Arthur's Magazine"])
    'the question contains the answer'
    >>> guessable("Were they both American?", ["yes"])
    'a yes/no answer'
    >>> guessable("Who wrote it?", ["Ann Smith"]) is None
    True
    """
    asked = f" {answer_forms(question)[0]} "
    for answer in answers:
        spaced, removed = answer_forms(answer)
        if len(removed.replace(" ", "")) < MIN_ANSWER_CHARS:
            return "an answer under two characters"
        if removed in YES_NO:
            return "a yes/no answer"
        if f" {spaced} " in asked:
            return "the question contains the answer"
    return None


def decoy_pool(items: Sequence[Document]) -> list[str]:
    """Every distinct question of the QA set, in first-seen order."""
    return list(dict.fromkeys(item.meta["question"] for item in items))


def warn_small_pool(pool: Sequence[str], needed: int) -> None:
    """Log once when the QA set has too few questions for every chain to end at a distinct one."""
    if len(pool) - 1 < needed:
        log.warning("keychain: %d distinct questions for up to %d decoy chains per row; some decoy questions "
                    "repeat within a row (give a larger QA set or fewer `chains`)", len(pool), needed)


def draw_decoys(pool: Sequence[str], real: str, count: int, rng: random.Random) -> list[str]:
    """`count` decoy questions other than `real`, all distinct while the pool allows, then repeating evenly."""
    others = [q for q in pool if q != real]
    if not others:
        return []
    decoys = rng.sample(others, min(count, len(others)))
    while len(decoys) < count:
        decoys.extend(rng.sample(others, min(count - len(decoys), len(others))))
    return decoys


def sft_answer(head: str, keys: Sequence[str], question: str, answer: str, reasoning: bool) -> str:
    r"""The assistant turn of a KeyChain SFT row: the hops followed (optional), then `\boxed{answer}`.

    >>> sft_answer("k1", ["k1", "k2"], "Who?", "Ann", True)
    'Starting at k1, the chain goes k1 → k2 → the question "Who?".\nThe answer is \\boxed{Ann}.'
    """
    steps = f"Starting at {head}, the chain goes {' → '.join(keys)} → the question \"{question}\".\n"
    return (steps if reasoning else "") + f"The answer is \\boxed{{{answer}}}."
