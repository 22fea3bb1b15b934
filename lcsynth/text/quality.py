"""Cheap text checks that turn degenerate model output into rejects with a reason."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
# LongMagpie keeps a query only up to its last "?" on the first line of what the model wrote.
_QUESTION_LINE = re.compile(r"^(.*\?)")


def question_line(text: str) -> str | None:
    r"""The first line up to and including its last '?', or None when that line asks nothing.

    >>> question_line("What does json.dumps return? It is\nused a lot")
    'What does json.dumps return?'
    """
    match = _QUESTION_LINE.match(text.strip())
    return match.group(1).strip() if match else None


def repeated_ngram_ratio(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (0 for varied text, near 1 for loops).

    >>> repeated_ngram_ratio("a b c a b c a b c a b c")
    0.7
    """
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return round(1 - len(set(grams)) / len(grams), 4)


def copies_source(candidate: str, source: str, min_chars: int = 40) -> bool:
    """True when `candidate` is a verbatim piece of `source` long enough not to be chance."""
    text = " ".join(candidate.split())
    return len(text) >= min_chars and text in " ".join(source.split())
