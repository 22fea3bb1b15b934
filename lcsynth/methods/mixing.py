"""What the LLM-driven methods share: spans, companion documents, answer checks, retries with a new seed.

A token-bounded span of a document, other documents for multi-document contexts, the checks every
generated answer goes through, and asking again with another seed when an output fails them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from lcsynth.backends.base import Completion, Request
from lcsynth.corpus.readers import Document
from lcsynth.corpus.store import StoredDoc, TokenStore
from lcsynth.errors import Reject
from lcsynth.text.quality import repeated_ngram_ratio

if TYPE_CHECKING:
    from lcsynth.methods.base import MethodContext

T = TypeVar("T")
SEED_STRIDE = 1_000_003  # attempt k of a request uses seed + k * SEED_STRIDE


async def first_passing(ctx: MethodContext, request_for: Callable[[int], Request], seed: int, attempts: int,
                        check: Callable[[Completion], T]) -> tuple[T, Completion, int]:
    """Ask until `check` passes, at most `attempts` times, each time with another seed.

    Returns what `check` made of the passing completion, the completion and the attempts it took; the last
    attempt's Reject is raised. Seeds are derived from `seed`, so a rerun asks (and the cache answers) the same.
    """
    for attempt in range(attempts):
        completion = await ctx.complete(request_for((seed + attempt * SEED_STRIDE) % 2**31))
        try:
            return check(completion), completion, attempt + 1
        except Reject:
            if attempt + 1 == attempts:
                raise
    raise ValueError("attempts must be at least 1")


# LongMagpie's multi-document contexts separate documents with one fixed banner line.
DOCUMENT_BANNER = "\n\n==================== next document ====================\n\n"
REFUSALS = ("i cannot", "i can't", "i'm sorry", "i am sorry", "as an ai", "i am unable", "i'm unable",
            "cannot answer", "not able to answer", "no information")


def token_span(counts: list[int], budget: int, rng: random.Random) -> tuple[int, int, int]:
    """Segments [first, last) of at most `budget` tokens from a random start (at least one segment), and their tokens.

    >>> token_span([5, 5, 5, 5], 10, random.Random(0))
    (2, 4, 10)
    """
    first = rng.randrange(len(counts))
    total, last = 0, first
    while last < len(counts) and (last == first or total + counts[last] <= budget):
        total += counts[last]
        last += 1
    while first > 0 and total + counts[first - 1] <= budget:  # near the end: grow backwards
        first -= 1
        total += counts[first]
    return first, last, total


def companion_documents(store: TokenStore, exclude: str, count: int, budget: int,
                        rng: random.Random) -> list[StoredDoc]:
    """Up to `count` other corpus documents, drawn at random, whose tokens together fit in `budget`.

    Draws that would not fit are skipped; after a bounded number of draws it returns what it has.
    """
    chosen: list[StoredDoc] = []
    taken = {exclude}
    for _ in range(8 * count):
        if len(chosen) == count or len(taken) > len(store):
            break
        index = rng.randrange(len(store))
        doc_id = store.ids[index]
        if doc_id in taken:
            continue
        taken.add(doc_id)
        tokens = store.doc_tokens[index]
        if tokens <= budget:
            chosen.append(store.doc(index))
            budget -= tokens
    return chosen


def mixed_documents(doc: Document, ctx: MethodContext, rng: random.Random, most: int, joiner_tokens: int = 0,
                    header_tokens: int = 0) -> list[tuple[str, str]]:
    """The unit's document among n - 1 others (n ~ U{1..most}) that fit the context, shuffled, as (id, text).

    The others come from the corpus store and fit `ctx.document_limit` together with the document, a
    joiner between each two documents and a header before each.
    """
    assert ctx.store is not None and ctx.document_limit is not None
    wanted = rng.randint(1, most)
    own = doc.meta.get("tokens") or len(ctx.backend.tokenizer.encode(doc.text))
    budget = ctx.document_limit - own - joiner_tokens * (wanted - 1) - header_tokens * wanted
    others = companion_documents(ctx.store, doc.id, wanted - 1, budget, rng)
    parts = [(doc.id, doc.text), *((d.id, "".join(d.segments)) for d in others)]
    rng.shuffle(parts)
    return parts


def numbered_documents(texts: list[str]) -> str:
    """Documents under numbered headers, as cross-document instructions refer to them.

    >>> print(numbered_documents(["a", "b"]))
    Document 1:
    a
    <BLANKLINE>
    Document 2:
    b
    """
    return "\n\n".join(f"Document {i}:\n{text.strip()}" for i, text in enumerate(texts, 1))


def checked_answer(completion: Completion, which: str, max_repetition: float) -> str:
    """The answer's text, or a Reject: empty, cut off, refusing, looping, or fewer than two real words."""
    answer = completion.text.strip()
    if not answer:
        raise Reject(f"empty_{which}", raw=completion.text)
    if completion.finish_reason == "length":
        raise Reject(f"{which}_truncated", "hit max_tokens", raw=answer)
    if any(phrase in answer.lower() for phrase in REFUSALS):
        raise Reject(f"{which}_refusal", raw=answer)
    if repeated_ngram_ratio(answer) > max_repetition:
        raise Reject(f"repetitive_{which}", raw=answer)
    if sum(len(w) >= 3 for w in re.findall(r"\w+", answer)) < 2:
        raise Reject(f"{which}_too_short", raw=answer)
    return answer
