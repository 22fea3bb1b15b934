"""Tokenizers: lengths are always counted in tokens of the model that will read the data."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any, Protocol

from lcsynth.errors import ConfigError, MissingExtra


class Tokenizer(Protocol):
    """What lcsynth needs of a tokenizer."""

    name: str

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS or other added tokens."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`; a character split at either edge is dropped."""
        ...


def count_tokens(tokenizer: Tokenizer, text: str) -> int:
    """Number of tokens in `text`."""
    return len(tokenizer.encode(text))


class LlamaCppTokenizer:
    """The vocabulary of a GGUF model, through llama.cpp."""

    def __init__(self, llama: Any, name: str) -> None:
        self._llama = llama
        self.name = name
        self._pieces: list[bytes] | None = None
        self._piece_lengths: Any = None

    @classmethod
    def from_gguf(cls, path: str) -> LlamaCppTokenizer:
        """Load only the vocabulary of a GGUF file (fast: no weights)."""
        from llama_cpp import Llama

        with _quiet_stderr():  # llama.cpp warns that a vocabulary has no training context; it needs none
            llama = Llama(model_path=path, vocab_only=True, verbose=False)
        return cls(llama, name=path)

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF key-value metadata (chat template, special tokens, context length)."""
        return self._llama.metadata

    def _tokenize(self, text: str, special: bool) -> list[int]:
        # llama-cpp-python sizes its buffer by the training context and, for longer texts, tokenizes twice
        # (the first call only reports the size); a buffer of one token per byte always fits.
        import llama_cpp

        data = text.encode("utf-8")
        buffer = (llama_cpp.llama_token * (len(data) + 1))()
        count = llama_cpp.llama_tokenize(self._llama._model.vocab, data, len(data), buffer, len(buffer), False, special)
        if count < 0:
            return self._llama.tokenize(data, add_bos=False, special=special)
        return buffer[:count]

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (special-token strings are not parsed)."""
        return self._tokenize(text, special=False)

    def encode_special(self, text: str) -> list[int]:
        """Token ids of a rendered prompt, whose chat markup must become special tokens."""
        return self._tokenize(text, special=True)

    def _table(self) -> list[bytes]:
        # llama-cpp-python's detokenize reads pieces through a 32-byte buffer and garbles longer tokens
        # (long whitespace runs), so the pieces are read here, once, with a buffer that fits.
        if self._pieces is None:
            import ctypes

            import llama_cpp

            vocab = self._llama._model.vocab
            buffer = ctypes.create_string_buffer(1024)
            pieces = []
            for token in range(self._llama.n_vocab()):
                size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
                pieces.append(buffer.raw[:size] if size > 0 else b"")
            self._pieces = pieces
        return self._pieces

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`."""
        table = self._table()
        return b"".join(table[i] for i in ids).decode("utf-8", errors="ignore")

    def piece_bytes(self, ids: list[int]) -> Any:
        """UTF-8 byte length of each token's text (a numpy array)."""
        import numpy as np

        if self._piece_lengths is None:
            self._piece_lengths = np.array([len(p) for p in self._table()])
        return self._piece_lengths[ids]


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (where C libraries log) and `sys.stderr` for the block.

    llama-cpp-python's log callback writes to `sys.stderr`, which is not descriptor 2 in a notebook or under a
    capturing test runner.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            with redirect_stderr(devnull):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class HFTokenizer:
    """A `transformers` tokenizer, by hub name or local path."""

    def __init__(self, name_or_path: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise MissingExtra("transformers", "vllm", "an HF tokenizer") from None
        try:
            self.hf = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"tokenizer '{name_or_path}' cannot be loaded: {str(exc).splitlines()[0]}") from None
        self.name = name_or_path

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text, without added special tokens."""
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`."""
        return self.hf.decode(ids)


def load_tokenizer(name_or_path: str) -> Tokenizer:
    """A GGUF file's own vocabulary for `*.gguf`, otherwise a `transformers` tokenizer (hub name or folder)."""
    if name_or_path.endswith(".gguf"):
        if not Path(name_or_path).is_file():
            raise ConfigError(f"tokenizer '{name_or_path}' cannot be loaded: no such .gguf file")
        return LlamaCppTokenizer.from_gguf(name_or_path)
    return HFTokenizer(name_or_path)


def fit_tokens(tokenizer: Tokenizer, text: str, limit: int, how: str) -> tuple[str, int, int]:
    """Cut `text` to at most `limit` tokens at token boundaries.

    `how` is "head" (keep the start) or "head_tail" (keep the first and last halves, as LongMagpie
    does). Returns (text, kept tokens, original tokens); text is returned unchanged when it fits.
    """
    ids = tokenizer.encode(text)
    if len(ids) <= limit:
        return text, len(ids), len(ids)
    if how == "head":
        kept = ids[:limit]
        return tokenizer.decode(kept), len(kept), len(ids)
    head, tail = ids[: limit - limit // 2], ids[len(ids) - limit // 2 :]
    return tokenizer.decode(head) + tokenizer.decode(tail), len(head) + len(tail), len(ids)
