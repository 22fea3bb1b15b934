"""NExtLong: a document extended to the target length with hard-negative chunks retrieved from the corpus.

The document is cut into meta-chunks (lines grouped up to `max_chunk_chars`); after each meta-chunk come
the chunks of other documents most similar to it (BM25 by default), so a model continuing the document
has to reach back past look-alike distractors. Meta-chunks keep their order; removing the negatives
(their spans are recorded) gives the document back exactly.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lcsynth.corpus.assemble import join_tokens, joined_tokens, stored_doc, trim_to
from lcsynth.corpus.readers import Document
from lcsynth.corpus.retrieval import Chunk, Retriever, load_or_build
from lcsynth.corpus.store import TokenStore, iter_store
from lcsynth.errors import Reject
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.text.lengths import LengthSpec
from lcsynth.text.tokens import Tokenizer

_JOIN = "\n"


def meta_chunks(text: str, max_chars: int = 2048) -> list[str]:
    r"""Lines grouped greedily while the group stays within `max_chars` (a longer line stands alone).

    >>> meta_chunks("aa\nbb\ncc", max_chars=5)
    ['aa\nbb', 'cc']
    """
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        if current and size + len(line) > max_chars:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        chunks.append("\n".join(current))
    return chunks


def corpus_chunks(store: TokenStore, max_chars: int) -> Iterator[Chunk]:
    """Every meta-chunk of every stored document, numbered, for the retrieval index."""
    number = 0
    for doc in iter_store(store):
        for text in meta_chunks("".join(doc.segments), max_chars):
            if text.strip():
                yield Chunk(number, doc.id, text)
                number += 1


def chunk_token_counts(folder: Path, retriever: Retriever, tokenizer: Tokenizer) -> dict[int, int]:
    """Tokens of every indexed chunk, counted once when the index is built and kept beside it."""
    path = folder / "chunk_tokens.json"
    if path.exists():
        return {int(k): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    counts = {i: len(tokenizer.encode(retriever.chunk(i).text)) for i in range(len(retriever))}
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(counts), encoding="utf-8")
    temp.replace(path)
    return counts


class NExtLongParams(BaseModel):
    """Parameters of the `nextlong` method."""

    model_config = ConfigDict(extra="forbid")
    samples_per_document: int = Field(default=1, ge=1)
    lengths: LengthSpec = Field(default_factory=lambda: LengthSpec(targets={65536: 1.0}))
    max_chunk_chars: int = Field(default=2048, ge=64)
    retriever: str = "bm25"
    recount: bool = False  # tokenize each finished text once more (only needed for unusual tokenizers)


class NExtLongMethod(Method):
    """Pretraining rows: a document interleaved with hard negatives up to the target length."""

    name = "nextlong"
    kind = "pretrain"
    Params = NExtLongParams
    params: NExtLongParams
    needs_store = True

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        self._retriever: Retriever | None = None
        self._chunk_tokens: dict[int, int] = {}
        self._additive = True
        self._doc_chunks: dict[str, list[int]] | None = None

    async def prepare(self, ctx: MethodContext, run_dir: Path) -> list[tuple[dict[str, Any], Reject]]:
        """Build (or load) the chunk index before any unit runs, so units in other processes never build it twice."""
        assert ctx.store is not None
        self.retriever(ctx.store, ctx.backend.tokenizer)
        return []

    def retriever(self, store: TokenStore, tokenizer: Tokenizer) -> Retriever:
        """The corpus chunk index, built once per corpus, tokenizer and chunk size, then loaded from disk."""
        if self._retriever is None:
            if self.params.retriever != "bm25":
                from lcsynth.corpus.retrieval import create_retriever

                self._retriever = create_retriever(self.params.retriever,
                                                   corpus_chunks(store, self.params.max_chunk_chars))
            else:
                folder = store.folder / f"bm25-{self.params.max_chunk_chars}"
                self._retriever = load_or_build(folder, lambda: corpus_chunks(store, self.params.max_chunk_chars))
                self._chunk_tokens = chunk_token_counts(folder, self._retriever, tokenizer)
        return self._retriever

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Retrieve negatives for each meta-chunk, interleave to the target, and record every span."""
        store, tokenizer = ctx.store, ctx.backend.tokenizer
        assert store is not None
        source = "".join(stored_doc(store, doc.id).segments)
        seed = rng.randrange(2**31)
        rng = random.Random(seed)
        target = self.params.lengths.pick(rng)
        tolerance = self.params.lengths.tolerance(target)
        parts = meta_chunks(source, self.params.max_chunk_chars)
        join = join_tokens(tokenizer, _JOIN)
        retriever = self.retriever(store, tokenizer)
        self._additive = store.additive
        part_tokens = self._part_tokens(doc.id, parts, tokenizer)
        budget = target - sum(part_tokens) - join * (len(parts) - 1)
        if budget <= 0:
            raise Reject("document_longer_than_target", f"{sum(part_tokens)} tokens >= target {target}")
        average = max(store.total_tokens // max(len(retriever), 1), 1)
        # joins cost about `join` tokens each; where they cost less or more, aim again with the measured gap
        for attempt in range(3):
            k = math.ceil(budget / (len(parts) * (average + join))) + attempt
            negatives = self._negatives(parts, k, budget, join, doc.id, retriever, tokenizer, random.Random(seed))
            try:
                return [self._row(parts, negatives, part_tokens, join, doc.id, seed, target, tolerance, tokenizer)]
            except Reject as reject:
                if reject.reason != "length_out_of_tolerance" or attempt == 2:
                    raise
                budget += target - int(reject.detail.split(" ", 1)[0])
        raise AssertionError("unreachable")

    def _part_tokens(self, doc_id: str, parts: list[str], tokenizer: Any) -> list[int]:
        """Tokens of the document's meta-chunks: from the index's saved counts where the texts match."""
        assert self._retriever is not None
        if self._doc_chunks is None:
            self._doc_chunks = {}
            for chunk_id in range(len(self._retriever)):
                self._doc_chunks.setdefault(self._retriever.chunk(chunk_id).doc_id, []).append(chunk_id)
        indexed = iter(self._doc_chunks.get(doc_id, []))
        counts = []
        for part in parts:
            chunk_id = next(indexed, None) if part.strip() else None
            known = self._retriever.chunk(chunk_id) if chunk_id is not None else None
            if known is not None and known.text == part and chunk_id in self._chunk_tokens:
                counts.append(self._chunk_tokens[chunk_id])
            else:
                counts.append(len(tokenizer.encode(part)))
        return counts

    def _tokens(self, chunk: Chunk, tokenizer: Any) -> int:
        if chunk.id not in self._chunk_tokens:
            self._chunk_tokens[chunk.id] = len(tokenizer.encode(chunk.text))
        return self._chunk_tokens[chunk.id]

    def _negatives(self, parts: list[str], k: int, budget: int, join: int, doc_id: str, retriever: Retriever,
                   tokenizer: Any, rng: random.Random) -> list[list[tuple[Chunk, float, int]]]:
        """Top-k negatives per meta-chunk, best first, topped up at random when BM25 finds too few, trimmed."""
        used: set[int] = set()
        chosen: list[list[tuple[Chunk, float, int]]] = []
        left = budget
        others: list[int] = []
        for part in parts:
            hits = retriever.search(part, k, exclude_doc=doc_id, exclude_ids=used)
            if len(hits) < k and not others:  # BM25 found too few: top up with random chunks of other documents
                others = [i for i in range(len(retriever)) if retriever.chunk(i).doc_id != doc_id]
                if not others:
                    raise Reject("no_negatives", "the corpus has no other document")
            while len(hits) < k and len(used) + len(hits) < len(others):
                extra = rng.choice(others)
                if extra not in used and all(extra != h for h, _ in hits):
                    hits.append((extra, 0.0))
            group: list[tuple[Chunk, float, int]] = []
            for chunk_id, score in hits:
                if left <= 0:
                    break
                chunk = retriever.chunk(chunk_id)
                used.add(chunk_id)
                tokens = self._tokens(chunk, tokenizer) + join
                if tokens > left:  # the last negative is cut to land on the target
                    text, count = trim_to(chunk.text, left - join, tokenizer)
                    if count <= 0:
                        left = 0
                        break
                    chunk, tokens = Chunk(chunk.id, chunk.doc_id, text), count + join
                group.append((chunk, score, tokens - join))
                left -= tokens
            chosen.append(group)
        return chosen

    def _row(self, parts: list[str], negatives: list[list[tuple[Chunk, float, int]]], part_tokens: list[int], join: int,
             doc_id: str, seed: int, target: int, tolerance: int, tokenizer: Any) -> Record:
        """Lay out p₁ N₁ p₂ N₂ …, with character spans of the meta-chunks and the negatives' provenance."""
        pieces: list[str] = []
        counted: list[tuple[str, int]] = []
        spans, negative_spans, token_offsets, at, tokens_at = [], [], [], 0, 0
        for part, count, group in zip(parts, part_tokens, negatives, strict=True):
            for text, tokens in [(part, count), *((c.text, n) for c, _, n in group)]:
                if pieces:
                    at += len(_JOIN)
                    tokens_at += join
                if text is part:
                    spans.append([at, at + len(part)])
                    token_offsets.append(tokens_at)
                else:
                    negative_spans.append([at, at + len(text)])
                pieces.append(text)
                counted.append((text, tokens))
                at += len(text)
                tokens_at += tokens
        text = _JOIN.join(pieces)
        if self.params.recount or not self._additive:
            n_tokens = len(tokenizer.encode(text))
        else:
            joiners = ["", *[_JOIN] * (len(counted) - 1)]
            n_tokens = joined_tokens(tokenizer.encode, [(j, t, n) for j, (t, n) in zip(joiners, counted, strict=True)])
        if abs(n_tokens - target) > tolerance:
            raise Reject("length_out_of_tolerance", f"{n_tokens} tokens for target {target} ± {tolerance}")
        meta = {"method": self.name, "seed": seed, "source_doc_id": doc_id, "target_tokens": target,
                "n_tokens": n_tokens, "tolerance": tolerance, "meta_chunk_spans": spans,
                "meta_chunk_token_offsets": token_offsets,
                "evidence_depths": [round(o / n_tokens, 4) for o in token_offsets],
                "negatives": [[c.id, round(s, 4), c.doc_id] for group in negatives for c, s, _ in group],
                "negatives_per_chunk": [len(group) for group in negatives], "negative_spans": negative_spans,
                "doc_boundaries": [[0, len(text)]]}
        return Record(self.kind, {"text": text}, meta)
