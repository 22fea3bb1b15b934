"""Exact BPE token ids at dictionary speed, by remembering the tokens of each pre-tokenizer piece.

A BPE tokenizer first cuts text into pieces with its pre-tokenizer's regular expressions (words with their
leading space, digits, punctuation runs, whitespace) and never merges across two pieces, so a text's tokens
are its pieces' tokens in order. Natural text repeats its pieces heavily: each distinct piece is tokenized
once by the real tokenizer and remembered, and a document costs one regex pass plus dictionary lookups.

The expressions are llama.cpp's, by the GGUF `tokenizer.ggml.pre` name; a vocabulary whose pre-tokenizer is
not listed here (or an SPM vocabulary, which has none) is tokenized whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain

import regex

# Every expression ends in `|\s+`: llama.cpp keeps the text between matches as pieces too, and with these
# expressions that text is always whitespace.
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# llama.cpp cuts every digit out first, then applies GPT2 to what lies between; in one pass that is: single
# digits, and a digit ends a whitespace run as the end of the text would.
GPT2_SINGLE_DIGITS = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"
LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")

# GGUF pre-tokenizer name -> one expression that cuts text into the pieces llama.cpp cuts it into.
PRE_TOKENIZERS: dict[str, str] = {
    **dict.fromkeys(("gpt-2", "phi-2", "mpt", "olmo", "jais"), GPT2),
    **dict.fromkeys(("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone"), GPT2_SINGLE_DIGITS),
    **dict.fromkeys(("llama-bpe", "llama3", "dbrx", "smaug-bpe"), LLAMA3),
    **dict.fromkeys(("qwen2", "stablelm2"), QWEN2),
}


def splitter(pre: str) -> Callable[[str], list[str]] | None:
    """The pre-tokenizer called `pre` as a function from text to pieces, or None if it is not known here."""
    expression = PRE_TOKENIZERS.get(pre)
    if expression is None:
        return None
    # The regex module's \s is Unicode White_Space, as llama.cpp's (Python's re would add U+001C..U+001F).
    pattern = regex.compile(expression, regex.VERSION0)

    def split(text: str) -> list[str]:
        # concurrent: matching releases the GIL, so another thread can run meanwhile
        return pattern.findall(text, concurrent=True)

    return split


class PieceCache:
    """Token ids of texts, each distinct piece tokenized once by `encode_piece` and remembered.

    New pieces are tokenized together in one call, a digit between each (a digit is a piece of its own for
    most pre-tokenizers), when the pre-tokenizer confirms the joined text cuts into exactly those pieces; the
    ids are then shared out by the byte length of each token (`token_bytes`). Otherwise, one call per piece.
    At most `max_pieces` pieces are kept; when full, the memory starts over (a corpus's common pieces come
    back within a few documents).
    """

    separator = "0"

    def __init__(self, split: Callable[[str], list[str]], encode_piece: Callable[[str], list[int]],
                 token_bytes: Callable[[list[int]], Sequence[int]] | None = None, max_pieces: int = 200_000) -> None:
        self.split, self.encode_piece, self.token_bytes = split, encode_piece, token_bytes
        self.max_pieces = max_pieces
        self._ids: dict[str, tuple[int, ...]] = {}
        self._counts: dict[str, int] = {}

    def _learn(self, pieces: list[str]) -> None:
        if len(self._ids) + len(pieces) > self.max_pieces:
            self._ids.clear()
            self._counts.clear()
        new = list(dict.fromkeys(p for p in pieces if p not in self._ids))
        if len(new) > 1 and self.token_bytes is not None and self._learn_together(new):
            return
        for piece in new:
            self._remember(piece, self.encode_piece(piece))

    def _learn_together(self, new: list[str]) -> bool:
        joined = self.separator.join(new)
        expected = [part for piece in new for part in (piece, self.separator)][:-1]
        if self.split(joined) != expected:
            return False
        ids = self.encode_piece(joined)
        lengths = self.token_bytes(ids)  # type: ignore[misc]
        at = 0
        for piece in expected:  # tokens never cross a piece boundary, so the byte lengths line up
            start, need = at, len(piece.encode("utf-8"))
            while need > 0 and at < len(ids):
                need -= lengths[at]
                at += 1
            if need != 0:
                return False
            self._remember(piece, ids[start:at])
        return at == len(ids)

    def _remember(self, piece: str, ids: Sequence[int]) -> None:
        self._ids[piece] = tuple(ids)
        self._counts[piece] = len(ids)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`."""
        pieces = self.split(text)
        try:
            return list(chain.from_iterable(map(self._ids.__getitem__, pieces)))
        except KeyError:
            self._learn(pieces)
            return list(chain.from_iterable(map(self._ids.__getitem__, pieces)))

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        pieces = self.split(text)
        try:
            return sum(map(self._counts.__getitem__, pieces))
        except KeyError:
            self._learn(pieces)
            return sum(map(self._counts.__getitem__, pieces))
