"""The token store: every corpus document cut into sentence segments and tokenized once, kept on disk.

Long samples are assembled from segments by adding their token counts, never by re-tokenizing a growing
string. A segment starts at a boundary where tokenizers split anyway (whitespace after a sentence end or
before a line), so counts add up; the store checks that on a sample of documents when it is built and
records the verdict (`additive`), and methods re-count the final text once where it does not hold.
Memory holds only offsets and counts per document; segment text is read from disk when needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lcsynth.corpus.readers import Document
from lcsynth.text.tokens import Tokenizer

STORE_VERSION = "1"
MAX_SEGMENT_CHARS = 800
_BOUNDARY = re.compile(r"(?<=[.!?])\s|(?<=\S)\n")
_SPACE = re.compile(r"\s")
ADDITIVITY_PROBES = 8
RECENT_CHARS = 4_000_000  # text of recently read documents kept in memory: bounded, whatever the corpus size


def segment_text(text: str, max_chars: int = MAX_SEGMENT_CHARS) -> list[str]:
    r"""Cut text before the whitespace that follows a sentence end or starts a line; long runs at spaces.

    >>> segment_text("One. Two!\nThree")
    ['One.', ' Two!', '\nThree']
    """
    starts = [0] + [m.start() for m in _BOUNDARY.finditer(text) if m.start() > 0]
    pieces = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)], strict=True)]
    out: list[str] = []
    for piece in pieces:
        while len(piece) > max_chars:
            cut = max((m.start() for m in _SPACE.finditer(piece, 1, max_chars)), default=max_chars)
            out.append(piece[:cut])
            piece = piece[cut:]
        if piece:
            out.append(piece)
    return out


@dataclass(frozen=True)
class StoredDoc:
    """A document as segments with their token counts."""

    index: int
    id: str
    segments: list[str]
    counts: list[int]

    @property
    def tokens(self) -> int:
        """Tokens of the whole document."""
        return sum(self.counts)


class TokenStore:
    """Segments and token counts of a corpus, on disk (`docs.jsonl`) with an in-memory offset index."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        self.offsets: list[int] = index["offsets"]
        self.doc_tokens: list[int] = index["doc_tokens"]
        self.ids: list[str] = index["ids"]
        self.additive: bool = index["additive"]
        self.tokenizer_name: str = index["tokenizer"]
        self._position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self._handle = (folder / "docs.jsonl").open("rb")
        self._recent: dict[int, StoredDoc] = {}
        self._recent_chars = 0

    @staticmethod
    def fingerprint(corpus_key: str, tokenizer: Tokenizer) -> str:
        """A folder name for a (corpus, tokenizer) pair."""
        key = f"{STORE_VERSION}\x1f{corpus_key}\x1f{tokenizer.name}\x1f{MAX_SEGMENT_CHARS}"
        return hashlib.sha256(key.encode()).hexdigest()[:20]

    @classmethod
    def open_or_build(cls, folder: Path, docs: Callable[[], Iterable[Document]], tokenizer: Tokenizer) -> TokenStore:
        """Open the store in `folder`, building it first (once per corpus and tokenizer) if it is not there."""
        if not (folder / "index.json").exists():
            build_store(folder, docs(), tokenizer)
        return cls(folder)

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def total_tokens(self) -> int:
        """Tokens in the whole corpus."""
        return sum(self.doc_tokens)

    def position(self, doc_id: str) -> int | None:
        """Index of a document by id."""
        return self._position.get(doc_id)

    def doc(self, index: int) -> StoredDoc:
        """Read one document's segments from disk (the last few read are kept, so repeated draws are cheap)."""
        cached = self._recent.get(index)
        if cached is not None:
            return cached
        self._handle.seek(self.offsets[index])
        row = json.loads(self._handle.readline())
        doc = StoredDoc(index, row["id"], row["segments"], row["counts"])
        size = sum(map(len, doc.segments))
        while self._recent and self._recent_chars + size > RECENT_CHARS:
            oldest = self._recent.pop(next(iter(self._recent)))
            self._recent_chars -= sum(map(len, oldest.segments))
        self._recent[index] = doc
        self._recent_chars += size
        return doc

    def close(self) -> None:
        """Close the segment file."""
        self._handle.close()


def segment_counts(tokenizer: Tokenizer, segments: list[str]) -> list[int]:
    """Tokens of each segment, from one tokenization of their concatenation where the tokenizer allows.

    With per-token byte lengths (GGUF vocabularies), tokens are assigned to the segment they start in; if a
    token straddles a segment boundary, or the bytes do not add up, each segment is tokenized on its own.
    """
    piece_bytes = getattr(tokenizer, "piece_bytes", None)
    if piece_bytes is not None:
        ids = tokenizer.encode("".join(segments))
        starts = np.concatenate([[0], np.cumsum(piece_bytes(ids))])
        bounds = np.cumsum([len(s.encode("utf-8")) for s in segments])
        if starts[-1] == bounds[-1] and np.isin(bounds[:-1], starts).all():
            return np.diff(np.searchsorted(starts[:-1], bounds, side="left"), prepend=0).tolist()
    return [len(tokenizer.encode(s)) for s in segments]


def build_store(folder: Path, docs: Iterable[Document], tokenizer: Tokenizer) -> None:
    """Segment and tokenize every document once; write `docs.jsonl`, then `index.json` (last, atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    offsets, doc_tokens, ids = [], [], []
    additive = True
    with (folder / "docs.jsonl").open("wb") as handle:
        for doc in docs:
            segments = segment_text(doc.text)
            if not segments:
                continue
            counts = segment_counts(tokenizer, segments)
            if len(ids) < ADDITIVITY_PROBES:
                additive = additive and sum(counts) == len(tokenizer.encode(doc.text))
            offsets.append(handle.tell())
            handle.write(json.dumps({"id": doc.id, "segments": segments, "counts": counts},
                                    ensure_ascii=False).encode() + b"\n")
            doc_tokens.append(sum(counts))
            ids.append(doc.id)
        handle.flush()
        os.fsync(handle.fileno())
    index = {"version": STORE_VERSION, "tokenizer": tokenizer.name, "additive": additive, "offsets": offsets,
             "doc_tokens": doc_tokens, "ids": ids}
    temp = folder / "index.json.tmp"
    temp.write_text(json.dumps(index), encoding="utf-8")
    temp.replace(folder / "index.json")


def iter_store(store: TokenStore) -> Iterator[StoredDoc]:
    """Every document of the store in order."""
    for index in range(len(store)):
        yield store.doc(index)
