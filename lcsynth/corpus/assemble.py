"""Building long contexts from token-counted pieces: distractor spans from the store, evidence at a depth."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lcsynth.corpus.store import StoredDoc, TokenStore, segment_counts, segment_text
from lcsynth.errors import Reject
from lcsynth.text.tokens import Tokenizer


@dataclass
class Piece:
    """A run of segments with their token counts and where they came from."""

    segments: list[str]
    counts: list[int]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        """Tokens of the piece."""
        return sum(self.counts)

    @property
    def text(self) -> str:
        """The piece's text."""
        return "".join(self.segments)


def tidy(piece: Piece, tokenizer: Tokenizer) -> Piece:
    """Strip whitespace at the piece's edges (recounting those segments) so joined pieces count exactly.

    Pieces are joined with a blank line; whitespace left at an edge would merge with it into other tokens.
    """
    segments, counts = list(piece.segments), list(piece.counts)
    for index, strip in ((0, str.lstrip), (-1, str.rstrip)):
        if segments and segments[index] != strip(segments[index]):
            segments[index] = strip(segments[index])
            counts[index] = len(tokenizer.encode(segments[index]))
    keep = [i for i, s in enumerate(segments) if s]
    return Piece([segments[i] for i in keep], [counts[i] for i in keep], piece.source)


def stored_doc(store: TokenStore, doc_id: str) -> StoredDoc:
    """A unit's document as the store holds it (whole, with segment counts); a Reject if it is not there."""
    position = store.position(doc_id)
    if position is None:
        raise Reject("document_not_in_store", doc_id)
    return store.doc(position)


def text_piece(text: str, tokenizer: Tokenizer, source: dict[str, Any]) -> Piece:
    """A piece made from free text (evidence, a question), segmented and counted."""
    segments = segment_text(text)
    return Piece(segments, segment_counts(tokenizer, segments), source)


def trim_to(segment: str, tokens: int, tokenizer: Tokenizer) -> tuple[str, int]:
    """The longest prefix of `segment` with at most `tokens` tokens, and its exact token count."""
    ids = tokenizer.encode(segment)
    while tokens > 0:
        text = tokenizer.decode(ids[:tokens])
        count = len(tokenizer.encode(text))
        if count <= tokens:
            return text, count
        tokens -= 1
    return "", 0


def span_piece(doc: StoredDoc, start: int, budget: int) -> Piece:
    """Consecutive segments of `doc` from `start` while they fit in `budget` tokens (at least one segment)."""
    end, total = start, 0
    while end < len(doc.segments) and (end == start or total + doc.counts[end] <= budget):
        total += doc.counts[end]
        end += 1
    return Piece(doc.segments[start:end], doc.counts[start:end], {"doc_id": doc.id, "segments": [start, end]})


def distractor_pieces(store: TokenStore, rng: random.Random, budget: int, piece_tokens: int,
                      exclude: set[str], tokenizer: Tokenizer) -> list[Piece]:
    """Spans of random store documents (not in `exclude`) filling exactly `budget` tokens.

    Each span starts at a segment boundary and takes at most `piece_tokens`; the last one is trimmed to
    land on the budget. Documents are reused when the corpus is smaller than the budget.
    """
    allowed = [i for i in range(len(store)) if store.ids[i] not in exclude]
    if not allowed:
        raise ValueError("the corpus has no document to draw distractors from")
    pieces: list[Piece] = []
    left = budget
    while left > 0:
        doc = store.doc(rng.choice(allowed))
        piece = tidy(span_piece(doc, rng.randrange(len(doc.segments)), min(piece_tokens, left)), tokenizer)
        if not piece.segments:
            continue
        if piece.tokens > left:  # a single segment larger than what is left: cut it
            text, count = trim_to(piece.segments[0], left, tokenizer)
            if count == 0:
                break
            start = piece.source["segments"][0]
            piece = Piece([text], [count], {"doc_id": doc.id, "segments": [start, start + 1], "trimmed": True})
        pieces.append(piece)
        left -= piece.tokens
    return pieces


def place(pieces: list[Piece], item: Piece, depth: float) -> int:
    """Insert `item` among `pieces` at the fraction `depth` of their tokens (at a piece boundary); return its index."""
    total = sum(p.tokens for p in pieces)
    goal, seen, index = depth * total, 0, 0
    while index < len(pieces) and seen + pieces[index].tokens / 2 < goal:
        seen += pieces[index].tokens
        index += 1
    pieces.insert(index, item)
    return index


PROBE = "a"
WINDOW = 64  # characters each side of a join that are re-tokenized to count what the join changes


def join_delta(encode: Callable[[str], list[int]], left: str, joiner: str, right: str,
               left_tokens: int | None = None, right_tokens: int | None = None) -> int:
    """Tokens that `left + joiner + right` has beyond `left` and `right` counted alone.

    Only a window around the join is re-tokenized: tokenizers merge within a pre-token (a word, a
    whitespace run), so what happens at a join stays near it. A side shorter than the window whose
    count is given is not tokenized again.
    """
    a, b = left[-WINDOW:], right[:WINDOW]
    a_tokens = left_tokens if left_tokens is not None and len(left) <= WINDOW else len(encode(a))
    b_tokens = right_tokens if right_tokens is not None and len(right) <= WINDOW else len(encode(b))
    return len(encode(a + joiner + b)) - a_tokens - b_tokens


def joined_tokens(encode: Callable[[str], list[int]], parts: list[tuple[str, str, int]]) -> int:
    """Exact token count of `"".join(joiner + text for joiner, text, _ in parts)` from each text's own count.

    `parts` are (joiner before the text, text, tokens of the text alone); the first joiner must be "".
    """
    total = sum(count for _, _, count in parts)
    for (_, left, left_tokens), (joiner, right, right_tokens) in zip(parts, parts[1:], strict=False):
        total += join_delta(encode, left, joiner, right, left_tokens, right_tokens)
    return total


def join_tokens(tokenizer: Tokenizer, separator: str) -> int:
    """Tokens `separator` adds between two pieces of text (in context, where whitespace may merge)."""
    probe = len(tokenizer.encode(PROBE))
    return len(tokenizer.encode(f"{PROBE}.{separator}{PROBE}")) - len(tokenizer.encode(f"{PROBE}.")) - probe

