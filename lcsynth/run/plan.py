"""The unit plan: every (method, document, sample) numbered in output order, and the context units run in.

A unit's index fixes where its outcome lands, whatever order units finish in. The document limit (the context
minus the largest method budget) is settled here, before any document is cut to it by `corpus.documents`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lcsynth.backends.base import Backend
from lcsynth.backends.cache import RequestCache
from lcsynth.config import Recipe
from lcsynth.corpus.readers import Document, iter_documents
from lcsynth.corpus.store import TokenStore
from lcsynth.counters import RunCounters
from lcsynth.errors import ConfigError, Reject
from lcsynth.methods.base import Method, MethodContext
from lcsynth.text.tokens import Tokenizer


@dataclass(frozen=True)
class Unit:
    """One (method, document, sample) to run; `index` fixes its place in the output.

    A document the run cannot use becomes a unit too, with no method and its `skip` reason, so that
    its reject is written in the same fixed order as everything else.
    """

    index: int
    method: Method | None
    doc: Document
    sample: int | None
    skip: Reject | None = None

    def key(self) -> dict[str, Any]:
        """The unit's identity as written in rejects."""
        return {"method": self.method.name if self.method else None, "doc_id": self.doc.id, "sample": self.sample}


def plan_units(docs: Iterator[tuple[Document, Reject | None]], methods: list[Method],
               ctx: MethodContext | None = None) -> Iterator[Unit]:
    """Every (method, document, sample), numbered in output order; a skipped document is one unit.

    Methods that bring their own documents (`Method.sources`, e.g. QA items) follow the corpus methods.
    """
    own = [m.sources(ctx) if ctx is not None else None for m in methods]
    on_corpus = [m for m, items in zip(methods, own, strict=True) if items is None]
    index = 0
    for doc, skip in docs if on_corpus else ():
        if skip is not None:  # the text is not needed to record why the document was skipped
            yield Unit(index, None, replace(doc, text=""), None, skip)
            index += 1
            continue
        for method in on_corpus:
            for sample in range(method.samples_per_document):
                yield Unit(index, method, doc, sample)
                index += 1
    for method, items in zip(methods, own, strict=True):
        for doc in items or ():
            for sample in range(method.samples_per_document):
                yield Unit(index, method, doc, sample)
                index += 1


def open_store(recipe: Recipe, tokenizer: Tokenizer) -> TokenStore:
    """The corpus token store for this recipe's corpus and tokenizer, built on first use under output.root."""
    corpus = recipe.corpus.model_dump(mode="json")
    if recipe.corpus.path and Path(recipe.corpus.path).exists():
        stat = Path(recipe.corpus.path).stat()
        corpus["stat"] = [stat.st_size, stat.st_mtime_ns]  # a changed corpus file gets a new store
    folder = Path(recipe.output.root) / "stores" / TokenStore.fingerprint(json.dumps(corpus, sort_keys=True), tokenizer)

    def usable() -> Iterator[Document]:
        return (d for d in iter_documents(recipe.corpus) if d.text.strip() and len(d.text) >= recipe.corpus.min_chars)

    return TokenStore.open_or_build(folder, usable, tokenizer)


def document_token_limit(recipe: Recipe, backend: Backend, methods: list[Method]) -> int:
    """Tokens a document may take: the context minus the largest method budget, capped by the recipe."""
    limit = backend.context_length - max(m.reserved_tokens() for m in methods)
    if recipe.context.max_document_tokens:
        limit = min(limit, recipe.context.max_document_tokens)
    if limit <= 0:
        raise ConfigError(
            f"context: the model's {backend.context_length}-token context leaves no room for documents "
            "after the methods' generation budgets; lower the max_tokens parameters or raise backend.context_length"
        )
    return limit


def method_context(recipe: Recipe, backend: Backend, methods: list[Method], counters: RunCounters,
                   cache: RequestCache | None = None, store_folder: Path | None = None) -> MethodContext:
    """The context units run in: the backend, the corpus token store if a method needs it, the document limit.

    The store is opened from `store_folder` when given (built already), else opened or built for the recipe.
    """
    ctx = MethodContext(backend, recipe.templates, counters, cache)
    if any(m.needs_store for m in methods):
        ctx.store = TokenStore(store_folder) if store_folder else open_store(recipe, backend.tokenizer)
    ctx.document_limit = document_token_limit(recipe, backend, methods)
    ctx.seed = recipe.seed
    return ctx


def unit_total(recipe: Recipe, methods: list[Method]) -> int | None:
    """Units the progress bar expects, when the recipe caps the documents."""
    total = recipe.limits.max_documents and recipe.limits.max_documents * sum(m.samples_per_document
                                                                              for m in methods)
    return total or None
