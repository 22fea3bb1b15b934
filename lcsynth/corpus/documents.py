"""Corpus documents screened for a run: read, passed over when unusable, counted in tokens, cut to a limit.

`fitted_documents` is the stream every executor plans its units from. A document too large to read or too
short to use becomes a reject; the others are counted and, when too long, cut by `text.tokens.fit_tokens`
(through `fitting.Fitter`, which decides in which process). The limit comes from `run.plan.document_token_limit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from lcsynth.config import Recipe
from lcsynth.corpus.fitting import Fitter
from lcsynth.corpus.readers import Document, iter_documents
from lcsynth.corpus.store import TokenStore
from lcsynth.errors import Reject
from lcsynth.text.tokens import Tokenizer


def fitted_documents(recipe: Recipe, tokenizer: Tokenizer, token_limit: int, store: TokenStore | None = None,
                     fitter: Fitter | None = None) -> Iterator[tuple[Document, Reject | None]]:
    """Stream the corpus, fitting each document into `token_limit` tokens or saying why it is skipped.

    A document the token store already counted, and that fits, is not tokenized again. `fitter` counts
    tokens (in worker processes, when it has them); by default the run's own process does.
    """
    overflow = recipe.context.overflow
    how = "head" if overflow == "skip" else overflow
    fitter = fitter or Fitter(tokenizer, processes=0)
    for (doc, skip, known), fitted in fitter.fit(_screened(recipe, token_limit, store), token_limit, how):
        if skip is not None:
            yield doc, skip
            continue
        text, kept, total = fitted or (doc.text, known, known)
        if kept < total and overflow == "skip":
            yield doc, Reject("document_too_long", f"{total} tokens > limit {token_limit}")
            continue
        meta = {**doc.meta, "tokens": kept, "original_tokens": total, "truncated": kept < total,
                "token_spans": kept_spans(kept, total, how)}
        yield replace(doc, text=text, meta=meta), None


def _screened(recipe: Recipe, token_limit: int, store: TokenStore | None
              ) -> Iterator[tuple[tuple[Document, Reject | None, int], str | None]]:
    """Corpus documents with what is already known of them: a reason to skip, or a token count that fits.

    The text comes along when its tokens still need counting.
    """
    for read, doc in enumerate(iter_documents(recipe.corpus)):
        if recipe.limits.max_documents is not None and read >= recipe.limits.max_documents:
            return
        if doc.oversized:
            why = f"{doc.oversized} bytes > corpus.max_document_bytes {recipe.corpus.max_document_bytes}; " \
                  "passed over unread"
            yield (doc, Reject("document_too_large", why), 0), None
            continue
        if not doc.text.strip() or len(doc.text) < recipe.corpus.min_chars:
            what = f"{len(doc.text)} characters" if doc.text.strip() else "empty or only whitespace"
            yield (doc, Reject("document_too_short", what), 0), None
            continue
        position = store.position(doc.id) if store is not None else None
        if position is not None and store.doc_tokens[position] <= token_limit:
            yield (doc, None, int(store.doc_tokens[position])), None
        else:
            yield (doc, None, 0), doc.text


EARLY_WORKERS_BYTES = 2**20


def corpus_bytes(recipe: Recipe) -> int:
    """Bytes of the corpus files (a file, or a folder's files); 0 when it is not files (demo, hf)."""
    path = Path(recipe.corpus.path) if recipe.corpus.path and recipe.corpus.type != "hf" else None
    if path is None or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def counted_documents(docs: Iterator[tuple[Document, Reject | None]],
                      stats: dict[str, int]) -> Iterator[tuple[Document, Reject | None]]:
    """Pass documents through, counting those the run takes (read, truncated, tokens kept) in `stats`."""
    for doc, skip in docs:
        stats["documents_read"] += 1
        if skip is None:
            stats["documents_truncated"] += doc.meta["truncated"]
            stats["document_tokens"] += doc.meta["tokens"]
        yield doc, skip


def kept_spans(kept: int, total: int, how: str) -> list[list[int]]:
    """Token spans of the original document that a fitted document keeps.

    >>> kept_spans(100, 100, "head_tail"), kept_spans(10, 100, "head"), kept_spans(10, 100, "head_tail")
    ([[0, 100]], [[0, 10]], [[0, 5], [95, 100]])
    """
    if kept == total or how == "head":
        return [[0, kept]]
    head = kept - kept // 2
    return [[0, head], [total - kept // 2, total]]


def document_stats() -> dict[str, int]:
    """The corpus counters a run reports in its manifest, all zero."""
    return {"documents_read": 0, "documents_truncated": 0, "document_tokens": 0}
