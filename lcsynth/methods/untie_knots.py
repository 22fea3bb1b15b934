"""Untie the Knots: documents cut into chunks, shuffled together, with chunk-tracing tasks known by construction.

A pretraining row holds the shuffled chunks of several documents up to the target length; every chunk of a
document that was cut carries `<D> id </D>`, and after a document's last-appearing chunk an `<S> id₁ <s> id₂
… </S>` block gives its chunk ids in original order, so the order can be learned (and recovered exactly).
Tracing rows (GRPO) ask for that order, or for the chunk that follows a given one, over the same text
without the `<S>` blocks.
"""

from __future__ import annotations

import random
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lcsynth.corpus.assemble import Piece, join_tokens, joined_tokens, span_piece, stored_doc, tidy
from lcsynth.corpus.readers import Document
from lcsynth.errors import Reject
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.text.lengths import LengthSpec

_SEPARATOR = "\n\n"
_ALPHABET = string.ascii_letters + string.digits


class Markers(BaseModel):
    """The marker strings (the paper reserves special tokens; any strings your tokenizer keeps work)."""

    model_config = ConfigDict(extra="forbid")
    doc_open: str = "<D>"
    doc_close: str = "</D>"
    sort_open: str = "<S>"
    sort_sep: str = "<s>"
    sort_close: str = "</S>"


class UntieKnotsParams(BaseModel):
    """Parameters of the `untie_knots` method."""

    model_config = ConfigDict(extra="forbid")
    samples_per_document: int = Field(default=1, ge=1)
    lengths: LengthSpec = Field(default_factory=LengthSpec)
    chunks: dict[int, float] = Field(default_factory=lambda: {1: 0.3, 2: 0.3, 3: 0.4})  # chunk count → weight
    preserve_order: bool = False  # keep each document's chunks in order (interleave only)
    sort_task: bool = True
    tracing_rows: int = Field(default=1, ge=0)
    tasks: list[Literal["restore_order", "next_chunk"]] = Field(default_factory=lambda: ["restore_order",
                                                                                           "next_chunk"])
    id_length: int = Field(default=6, ge=4)
    markers: Markers = Field(default_factory=Markers)
    recount: bool = False  # tokenize each finished text once more (only needed for unusual tokenizers)


class UntieKnotsMethod(Method):
    """Pretraining rows of knotted documents, plus tracing-task GRPO rows."""

    name = "untie_knots"
    kind = "pretrain"
    Params = UntieKnotsParams
    params: UntieKnotsParams
    needs_store = True

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Gather documents to the target, cut, shuffle, mark, and write the rows."""
        store, tokenizer = ctx.store, ctx.backend.tokenizer
        assert store is not None
        seed = rng.randrange(2**31)
        rng = random.Random(seed)
        target = self.params.lengths.pick(rng)
        tolerance = self.params.lengths.tolerance(target)
        first = stored_doc(store, doc.id).index
        separator = join_tokens(tokenizer, _SEPARATOR)
        counts = sorted(self.params.chunks)
        # ids, markers and blocks cost about this many tokens per chunk; the gap is closed on the last document
        per_chunk = len(tokenizer.encode(self._prefix("x" * self.params.id_length))) + separator + 4
        docs: list[tuple[str, Piece, int]] = []
        left = target
        order = [first] + rng.sample(range(len(store)), len(store))
        for index in order:
            if left <= per_chunk * 3:
                break
            stored = store.doc(index)
            n = rng.choices(counts, weights=[self.params.chunks[c] for c in counts])[0]
            piece = tidy(span_piece(stored, 0, max(left - n * per_chunk, 1)), tokenizer)
            if not piece.segments or len(piece.segments) < n:
                continue
            docs.append((stored.id, piece, n))
            left -= piece.tokens + n * per_chunk
        chunks = self._chunks(docs, rng)
        text, layout, no_loss, traced, parts = self._layout(chunks, tokenizer)
        exact = self.params.recount or not store.additive
        n_tokens = len(tokenizer.encode(text)) if exact else joined_tokens(tokenizer.encode, parts)
        if abs(n_tokens - target) > tolerance:
            raise Reject("length_out_of_tolerance", f"{n_tokens} tokens for target {target} ± {tolerance}")
        meta = {"method": self.name, "seed": seed, "target_tokens": target, "n_tokens": n_tokens,
                "tolerance": tolerance, "doc_boundaries": [c["char_span"] for c in layout], "chunks": layout,
                "no_loss_spans": no_loss, "documents": [d for d, _, _ in docs]}
        records = [Record("pretrain", {"text": text}, meta)]
        records.extend(self._tracing(traced, layout, rng, seed))
        return records

    def _prefix(self, chunk_id: str) -> str:
        m = self.params.markers
        return f"{m.doc_open} {chunk_id} {m.doc_close}\n"

    def _chunks(self, docs: list[tuple[str, Piece, int]], rng: random.Random) -> list[dict[str, Any]]:
        """Cut each document into its chunk count at segment boundaries (equal token shares), then shuffle."""
        chunks = []
        for doc_index, (doc_id, piece, n) in enumerate(docs):
            total, bounds, acc = piece.tokens, [0], 0
            for j, count in enumerate(piece.counts):
                acc += count
                if len(bounds) < n and acc >= total * len(bounds) / n and j + 1 < len(piece.segments):
                    bounds.append(j + 1)
            bounds.append(len(piece.segments))
            ids = ["".join(rng.choice(_ALPHABET) for _ in range(self.params.id_length)) for _ in range(n)]
            for k in range(len(bounds) - 1):
                text = "".join(piece.segments[bounds[k]:bounds[k + 1]])
                chunks.append({"doc": doc_index, "doc_id": doc_id, "chunk": k, "of": len(bounds) - 1,
                               "id": ids[k] if len(bounds) > 2 else None, "text": text,
                               "tokens": sum(piece.counts[bounds[k]:bounds[k + 1]])})
        last = chunks.pop()  # the last chunk of the last document stays at the end
        if self.params.preserve_order:
            slots = [c["doc"] for c in chunks]
            rng.shuffle(slots)
            queues: dict[int, list[dict[str, Any]]] = {}
            for c in chunks:
                queues.setdefault(c["doc"], []).append(c)
            chunks = [queues[d].pop(0) for d in slots]
        else:
            rng.shuffle(chunks)
        return [*chunks, last]

    def _layout(self, chunks: list[dict[str, Any]], tokenizer: Any) -> tuple[
            str, list[dict[str, Any]], list[list[int]], str, list[tuple[str, str, int]]]:
        """Lay the chunks out: text, chunk spans, no-loss spans, text without sort blocks, counted parts.

        The counted parts are (joiner, text, tokens), from which the text's length is counted exactly.
        """
        m = self.params.markers
        last_seen = {c["doc"]: i for i, c in enumerate(chunks)}
        ids_of: dict[int, list[str]] = {}
        for c in chunks:
            if c["id"]:
                ids_of.setdefault(c["doc"], [None] * c["of"])[c["chunk"]] = c["id"]
        parts: list[str] = []
        counted: list[tuple[str, str, int]] = []
        traced: list[str] = []
        layout, no_loss, at = [], [], 0
        for i, c in enumerate(chunks):
            if i:
                parts.append(_SEPARATOR)
                traced.append(_SEPARATOR)
                at += len(_SEPARATOR)
            prefix = self._prefix(c["id"]) if c["id"] else ""
            joiner = _SEPARATOR if i else ""
            if prefix:
                no_loss.append([at, at + len(prefix.rstrip())])
                counted.append((joiner, prefix, len(tokenizer.encode(prefix))))
            counted.append(("" if prefix else joiner, c["text"], c["tokens"]))
            body = prefix + c["text"]
            layout.append({"doc_id": c["doc_id"], "chunk": c["chunk"], "of": c["of"], "id": c["id"],
                           "char_span": [at + len(prefix), at + len(body)]})
            parts.append(body)
            traced.append(body)
            at += len(body)
            if self.params.sort_task and c["id"] and last_seen[c["doc"]] == i:
                block = f"\n{m.sort_open} " + f" {m.sort_sep} ".join(ids_of[c["doc"]]) + f" {m.sort_close}"
                parts.append(block)
                counted.append(("", block, len(tokenizer.encode(block))))
                at += len(block)
        return "".join(parts), layout, no_loss, "".join(traced), counted

    def _tracing(self, text: str, layout: list[dict[str, Any]], rng: random.Random, seed: int) -> list[Record]:
        """GRPO rows whose answers the layout fixes: a document's chunk order, or the chunk after a chunk.

        The rows of one text ask distinct questions (no gold repeats within a text); each row's task is
        drawn among the tasks that still have an unasked question.
        """
        cut = sorted({c["doc_id"] for c in layout if c["id"]})
        m = self.params.markers
        ids_of = {doc_id: [c["id"] for c in sorted((c for c in layout if c["doc_id"] == doc_id and c["id"]),
                                                   key=lambda c: c["chunk"])] for doc_id in cut}
        unasked: dict[str, list[tuple[str, int]]] = {
            "restore_order": [(d, 0) for d in cut],
            "next_chunk": [(d, k) for d in cut for k in range(len(ids_of[d]) - 1)]}
        for questions in unasked.values():
            rng.shuffle(questions)
        rows = []
        for number in range(self.params.tracing_rows):
            tasks = [t for t in self.params.tasks if unasked[t]]
            if not tasks:
                break
            task = rng.choice(tasks)
            doc_id, k = unasked[task].pop()
            ids = ids_of[doc_id]
            if task == "restore_order":
                ask = (f"One document in the text was cut into {len(ids)} chunks; its first chunk is marked "
                       f"{m.doc_open} {ids[0]} {m.doc_close}. List the ids of all of its chunks in their original "
                       "order, separated by single spaces, and give the list as \\boxed{ids}.")
                answer = " ".join(ids)
            else:
                ask = (f"The chunk marked {m.doc_open} {ids[k]} {m.doc_close} was cut from a longer document. "
                       "Which chunk continues its text? Give that chunk's id as \\boxed{id}.")
                answer = ids[k + 1]
            content = ("The text below is made of chunks of several documents, shuffled; each chunk of a document "
                       f"that was cut starts with {m.doc_open} id {m.doc_close}.\n\n{text}\n\n{ask}")
            meta = {"method": self.name, "seed": seed, "task": task, "doc_id": doc_id, "tracing_row": number,
                    "chunk_ids": ids, "question": ask}
            rows.append(Record("grpo", {"prompt": [{"role": "user", "content": content}], "ground_truth": [answer]},
                               meta))
        return rows
