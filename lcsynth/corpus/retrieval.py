"""Chunk retrieval for hard-negative distractors (the NExtLong method).

NExtLong pads a long context with chunks that look like the query chunk but come from other documents, so a
model must find the real evidence among near misses. A `Retriever` answers "which chunks resemble this text?"
while leaving out the query's own document, chosen ids and copies of the query itself.

`BM25Retriever` (lexical, via the `bm25s` package) is the one shipped. A dense retriever can be added by
writing a class that implements the `Retriever` protocol plus a `build(chunks)` classmethod and registering
it in `RETRIEVERS`; `create_retriever` then finds it by name.

>>> r = BM25Retriever.build([Chunk(0, "a", "Cats purr and chase mice."), Chunk(1, "b", "Mice eat cheese."),
...                          Chunk(2, "c", "Rivers flow to the sea.")])
>>> [chunk_id for chunk_id, _ in r.search("Which animals chase mice?", k=2)]
[0, 1]
>>> [chunk_id for chunk_id, _ in r.search("Which animals chase mice?", k=2, exclude_doc="a")]
[1]
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lcsynth.errors import ConfigError, InputError

__all__ = [
    "RETRIEVERS",
    "BM25Retriever",
    "Chunk",
    "Retriever",
    "RetrieverFactory",
    "create_retriever",
    "index_folder",
    "load_or_build",
    "normalise_text",
]

INDEX_FORMAT = 1
_MARKER = "index.json"
_CHUNKS = "chunks.jsonl"
_STOPWORDS = "en"
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document; `id` is unique within a retriever."""

    id: int
    doc_id: str
    text: str


@runtime_checkable
class Retriever(Protocol):
    """Finds chunks similar to a query text, never returning excluded or duplicate chunks."""

    def search(
        self, query: str, k: int, exclude_doc: str | None = None, exclude_ids: AbstractSet[int] = frozenset()
    ) -> list[tuple[int, float]]:
        """Return up to `k` (chunk id, score) pairs, best first, ties by ascending chunk id.

        Chunks of `exclude_doc`, ids in `exclude_ids` and chunks whose normalised text equals the query's are
        never returned.
        """
        ...

    def chunk(self, chunk_id: int) -> Chunk:
        """Return the chunk with this id (KeyError if there is none)."""
        ...

    def __len__(self) -> int:
        """Return the number of indexed chunks."""
        ...


class RetrieverFactory(Protocol):
    """What `RETRIEVERS` maps a name to: anything with a `build(chunks)` that returns a `Retriever`."""

    def build(self, chunks: Iterable[Chunk]) -> Retriever:
        """Index `chunks` and return a ready retriever."""
        ...


def normalise_text(text: str) -> str:
    """Return the text as lower-case words separated by single spaces, the key for duplicate detection.

    >>> normalise_text("  Hello,  WORLD! 'Hello'")
    'hello world hello'
    """
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def _tokenize(texts: list[str], return_ids: bool) -> Any:
    import bm25s

    return bm25s.tokenize(texts, stopwords=_STOPWORDS, return_ids=return_ids, show_progress=False)


class BM25Retriever:
    """Lexical retriever backed by a `bm25s` index (English stopwords removed, no stemming).

    Build once per corpus with `build`, persist with `save` and reuse with `load` (or use `load_or_build`).
    """

    def __init__(self, ids: list[int], doc_ids: list[str], texts: list[str], bm25: Any | None) -> None:
        if not len(ids) == len(doc_ids) == len(texts):
            raise ValueError("ids, doc_ids and texts must have the same length")
        self._ids = ids
        self._doc_ids = doc_ids
        self._texts = texts
        self._pos = {chunk_id: i for i, chunk_id in enumerate(ids)}
        if len(self._pos) != len(ids):
            dup = next(chunk_id for chunk_id, n in Counter(ids).items() if n > 1)
            raise ValueError(f"chunk ids must be unique; {dup} appears more than once")
        self._doc_sizes = Counter(doc_ids)
        self._bm25 = bm25  # None when nothing in the corpus has an indexable word
        self._id_array: np.ndarray | None = None

    @classmethod
    def build(cls, chunks: Iterable[Chunk]) -> BM25Retriever:
        """Tokenize and index `chunks` (kept in memory with their texts and document ids)."""
        import bm25s

        chunk_list = list(chunks)
        texts = [c.text for c in chunk_list]
        bm25 = None
        if chunk_list:
            tokenized = _tokenize(texts, return_ids=True)
            if tokenized.vocab:
                bm25 = bm25s.BM25()
                bm25.index(tokenized, show_progress=False)
        return cls([c.id for c in chunk_list], [c.doc_id for c in chunk_list], texts, bm25)

    def __len__(self) -> int:
        """Return the number of indexed chunks."""
        return len(self._ids)

    def chunk(self, chunk_id: int) -> Chunk:
        """Return the chunk with this id (KeyError if there is none)."""
        i = self._pos[chunk_id]
        return Chunk(self._ids[i], self._doc_ids[i], self._texts[i])

    def search(
        self, query: str, k: int, exclude_doc: str | None = None, exclude_ids: AbstractSet[int] = frozenset()
    ) -> list[tuple[int, float]]:
        """Return up to `k` (chunk id, score) pairs, best first, ties by ascending chunk id.

        Only chunks sharing at least one indexed word with the query (score > 0) are returned. Chunks of
        `exclude_doc`, ids in `exclude_ids` and chunks whose `normalise_text` equals the query's are skipped;
        since they are filtered after scoring, the candidate window grows until `k` survive or none are left.
        """
        if k <= 0 or self._bm25 is None:
            return []
        vocab = self._bm25.vocab_dict
        token_ids = [vocab[t] for t in _tokenize([query], return_ids=False)[0] if t in vocab]
        if not token_ids:
            return []
        scores = np.asarray(self._bm25.get_scores(token_ids), dtype=np.float64)
        cand = np.flatnonzero(scores > 0)
        if cand.size == 0:
            return []
        cand_scores = scores[cand]
        if self._id_array is None:
            self._id_array = np.asarray(self._ids, dtype=np.int64)
        cand_ids = self._id_array[cand]

        query_key = normalise_text(query)
        excluded = self._doc_sizes.get(exclude_doc, 0) if exclude_doc is not None else 0
        window = min(cand.size, 2 * k + len(exclude_ids) + excluded)
        while True:
            if window < cand.size:
                # The `window` best, plus anything tied with the worst of them, so ties never split arbitrarily.
                cutoff = np.partition(cand_scores, cand.size - window)[cand.size - window]
                sel = np.flatnonzero(cand_scores >= cutoff)
            else:
                sel = np.arange(cand.size)
            order = sel[np.lexsort((cand_ids[sel], -cand_scores[sel]))]
            hits: list[tuple[int, float]] = []
            for j in order:
                pos = int(cand[j])
                chunk_id = self._ids[pos]
                if chunk_id in exclude_ids or (exclude_doc is not None and self._doc_ids[pos] == exclude_doc):
                    continue
                if normalise_text(self._texts[pos]) == query_key:
                    continue
                hits.append((chunk_id, float(cand_scores[j])))
                if len(hits) == k:
                    return hits
            if sel.size >= cand.size:
                return hits
            window = min(cand.size, window * 4)

    def save(self, folder: Path) -> None:
        """Write the bm25s index, `chunks.jsonl` (id, doc_id, text) and, last, the `index.json` marker."""
        import bm25s

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _MARKER).unlink(missing_ok=True)  # an interrupted save must not look complete
        if self._bm25 is not None:
            self._bm25.save(folder, show_progress=False)
        tmp = folder / (_CHUNKS + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for chunk_id, doc_id, text in zip(self._ids, self._doc_ids, self._texts, strict=True):
                f.write(json.dumps({"id": chunk_id, "doc_id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        os.replace(tmp, folder / _CHUNKS)
        marker = {
            "format": INDEX_FORMAT,
            "retriever": "bm25",
            "chunks": len(self._ids),
            "has_bm25": self._bm25 is not None,
            "stopwords": _STOPWORDS,
            "bm25s_version": bm25s.__version__,
        }
        tmp = folder / (_MARKER + ".tmp")
        tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, folder / _MARKER)

    @classmethod
    def load(cls, folder: Path) -> BM25Retriever:
        """Load an index written by `save`; InputError if it is missing, incomplete or inconsistent."""
        import bm25s

        folder = Path(folder)
        marker_path = folder / _MARKER
        if not marker_path.is_file():
            raise InputError(f"{folder}: no complete retrieval index ({_MARKER} missing); rebuild it")
        try:
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
            ids: list[int] = []
            doc_ids: list[str] = []
            texts: list[str] = []
            with (folder / _CHUNKS).open(encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    ids.append(int(row["id"]))
                    doc_ids.append(str(row["doc_id"]))
                    texts.append(str(row["text"]))
            bm25 = bm25s.BM25.load(folder, show_progress=False) if marker.get("has_bm25", True) else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{folder}: unreadable retrieval index ({exc}); delete the folder to rebuild") from None
        if marker.get("retriever") != "bm25" or marker.get("format") != INDEX_FORMAT:
            raise InputError(f"{folder}: not a bm25 index of format {INDEX_FORMAT}; delete the folder to rebuild")
        num_docs = bm25.scores["num_docs"] if bm25 is not None else len(ids)
        if marker.get("chunks") != len(ids) or num_docs != len(ids):
            raise InputError(
                f"{folder}: index.json says {marker.get('chunks')} chunks, {_CHUNKS} has {len(ids)}, bm25s has "
                f"{num_docs}; delete the folder to rebuild"
            )
        return cls(ids, doc_ids, texts, bm25)


RETRIEVERS: dict[str, RetrieverFactory] = {"bm25": BM25Retriever}


def create_retriever(name: str, chunks: Iterable[Chunk]) -> Retriever:
    """Build the retriever registered under `name` over `chunks`; ConfigError for an unknown name."""
    try:
        factory = RETRIEVERS[name]
    except KeyError:
        raise ConfigError(f"unknown retriever {name!r}; known: {', '.join(sorted(RETRIEVERS))}") from None
    return factory.build(chunks)


def index_folder(cache_root: Path, fingerprint: str) -> Path:
    """Return where the index of the corpus with this fingerprint lives.

    >>> index_folder(Path("cache"), "abc123").as_posix()
    'cache/retrieval/abc123'
    """
    return Path(cache_root) / "retrieval" / fingerprint


def load_or_build(folder: Path, chunks_factory: Callable[[], Iterable[Chunk]]) -> BM25Retriever:
    """Load the index saved in `folder`, or build it from `chunks_factory()` and save it there.

    A folder counts as holding an index only once its `index.json` exists (written last by `save`), so an
    interrupted save is rebuilt rather than half-loaded.
    """
    folder = Path(folder)
    if (folder / _MARKER).is_file():
        return BM25Retriever.load(folder)
    retriever = BM25Retriever.build(chunks_factory())
    retriever.save(folder)
    return retriever
