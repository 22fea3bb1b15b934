"""KeyChain's multi-hop layout: a QA item's own paragraphs among paragraphs of other items, as `Passage i:` blocks.

This is how LoongRL fills its contexts from HotpotQA, MuSiQue and 2WikiMultihopQA: the question's own
paragraphs (supporting and original distractors) plus random paragraphs of other questions, shuffled,
each rendered as `Passage i:` over its text, joined by blank lines, up to the target length. The last
drawn paragraph is cut at a sentence boundary so the row lands on its target.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from lcsynth.corpus.assemble import Piece, text_piece
from lcsynth.corpus.readers import Document
from lcsynth.corpus.store import segment_counts, segment_text
from lcsynth.errors import Reject
from lcsynth.text.tokens import Tokenizer

SEPARATOR = "\n\n"


def passage_pool(items: Sequence[Document]) -> list[str]:
    """Every distinct paragraph of the QA set, the pool distractor passages are drawn from."""
    return list(dict.fromkeys(p["text"] for item in items for p in item.meta.get("passages", []) if p["text"]))


def _header(number: int) -> str:
    return f"Passage {number}:\n"


def _cut(text: str, budget: int, tokenizer: Tokenizer) -> str:
    """The longest run of whole sentences from the start of `text` within `budget` tokens ('' if none fits)."""
    segments = segment_text(text)
    kept, total = [], 0
    for segment, count in zip(segments, segment_counts(tokenizer, segments), strict=True):
        if total + count > budget:
            break
        kept.append(segment)
        total += count
    return "".join(kept).strip()


def draw_distractors(pool: Sequence[str], own: set[str], budget: int, tokenizer: Tokenizer,
                     rng: random.Random) -> list[str]:
    """Random pool paragraphs (never the item's own, never twice) filling about `budget` tokens."""
    per_passage = len(tokenizer.encode(_header(100))) + len(tokenizer.encode(SEPARATOR))
    chosen: list[str] = []
    seen: set[int] = set()
    left, misses = budget, 0
    while left > per_passage and len(seen) < len(pool) and misses < 64:
        index = rng.randrange(len(pool))
        if index in seen or pool[index] in own:
            misses += index in seen
            seen.add(index)
            continue
        seen.add(index)
        text = pool[index]
        tokens = len(tokenizer.encode(text)) + per_passage
        if tokens > left:
            text = _cut(text, left - per_passage, tokenizer)
            if not text:
                break
            tokens = len(tokenizer.encode(text)) + per_passage
        chosen.append(text)
        left -= tokens
    return chosen


def passage_pieces(doc: Document, pool: Sequence[str], budget: int, tokenizer: Tokenizer,
                   rng: random.Random) -> tuple[list[Piece], list[int], set[int]]:
    """The numbered passages of one row as pieces, the indices of the item's own, and of its supporting ones."""
    own = doc.meta.get("passages") or [{"text": doc.text.strip(), "supporting": True}]
    own_tokens = sum(len(tokenizer.encode(_header(1) + p["text"] + SEPARATOR)) for p in own)
    if own_tokens > budget:
        raise Reject("target_too_short", f"the item's own {len(own)} passages take {own_tokens} of {budget} tokens")
    others = draw_distractors(pool, {p["text"] for p in own}, budget - own_tokens, tokenizer, rng)
    entries = [(p["text"], True, bool(p["supporting"])) for p in own] + [(t, False, False) for t in others]
    rng.shuffle(entries)
    pieces = [text_piece(_header(i) + text, tokenizer, {"passage": i, "own": mine, "supporting": supporting})
              for i, (text, mine, supporting) in enumerate(entries, 1)]
    return (pieces, [i for i, e in enumerate(entries) if e[1]], {i for i, e in enumerate(entries) if e[2]})
