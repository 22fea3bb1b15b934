"""Tokenizers: lengths are always counted in tokens of the model that will read the data."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any, Protocol

from lcsynth.errors import ConfigError, MissingExtra
from lcsynth.text.pieces import PieceCache, splitter

log = logging.getLogger(__name__)

# Text the piece cache must tokenize exactly as llama.cpp does before it is used: contractions, digits,
# accents, combining marks, CJK, emoji, every kind of whitespace run.
PROBE = ("I've 12345 apples; they'RE 3.14 and $5 -- caf\u00e9 cafe\u0301 \u4f60\u597d\u4e16\u754c!!\r\n\r\n  x\t\ty "
         "\x1c\x1d z\u00a0w\u2003v \u0661\u0662\u0663 \u2167 \u00bd \U0001F600\U0001F600 don't   \n\n\n  end  ")


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
    """Number of tokens in `text` (through the tokenizer's own `count` where it has a faster one)."""
    count = getattr(tokenizer, "count", None)
    return count(text) if count is not None else len(tokenizer.encode(text))


class LlamaCppTokenizer:
    """The vocabulary of a GGUF model, through llama.cpp.

    Plain text of a BPE vocabulary whose pre-tokenizer `lcsynth.text.pieces` knows goes through a `PieceCache`
    (the same ids, several times faster), once a probe text shows both agree; every `verify_every`-th text is
    still tokenized whole as well, and a disagreement turns the cache off for good.
    """

    verify_every = 64

    def __init__(self, llama: Any, name: str) -> None:
        self._llama = llama
        self.name = name
        self._pieces: list[bytes] | None = None
        self._piece_lengths: Any = None
        self._cache = self._piece_cache()
        self._calls = 0

    @classmethod
    def from_gguf(cls, path: str) -> LlamaCppTokenizer:
        """Load only the vocabulary of a GGUF file (fast: no weights)."""
        from llama_cpp import Llama

        with _quiet_stderr():  # llama.cpp warns that a vocabulary has no training context; it needs none
            llama = Llama(model_path=path, vocab_only=True, verbose=False)
        return cls(llama, name=path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its GGUF path: a worker process loads the vocabulary again."""
        if not Path(self.name).is_file():
            raise TypeError(f"a LlamaCppTokenizer named {self.name!r} (not a GGUF path) cannot be rebuilt elsewhere")
        return LlamaCppTokenizer.from_gguf, (self.name,)

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

    def _piece_cache(self) -> PieceCache | None:
        metadata = self.metadata
        split = splitter(metadata.get("tokenizer.ggml.pre", "")) if metadata.get("tokenizer.ggml.model") == "gpt2" \
            else None
        if split is None:
            return None
        cache = PieceCache(split, self._encode_whole, self._token_bytes)
        return cache if cache.encode(PROBE) == self._encode_whole(PROBE) else None

    def _token_bytes(self, ids: list[int]) -> list[int]:
        table = self._table()
        return [len(table[i]) for i in ids]

    def _encode_whole(self, text: str) -> list[int]:
        return self._tokenize(text, special=False)

    def _checked(self, text: str) -> bool:
        """Whether this text goes through the piece cache (every `verify_every`-th is compared as well)."""
        if self._cache is None:
            return False
        self._calls += 1
        if self._calls % self.verify_every == 0 and self._cache.encode(text) != self._encode_whole(text):
            self._cache = None
            log.warning("%s: the piece cache disagreed with llama.cpp on a text; tokenizing whole from now on",
                        self.name)
            return False
        return True

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (special-token strings are not parsed)."""
        cache = self._cache
        return cache.encode(text) if cache is not None and self._checked(text) else self._encode_whole(text)

    def count(self, text: str) -> int:
        """Number of tokens in plain text."""
        cache = self._cache
        return cache.count(text) if cache is not None and self._checked(text) else len(self._encode_whole(text))

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

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its name or folder: a worker process loads it again."""
        return HFTokenizer, (self.name,)

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
    if getattr(tokenizer, "count", None) is not None:  # counting alone is cheaper, and most texts fit
        total = count_tokens(tokenizer, text)
        if total <= limit:
            return text, total, total
    ids = tokenizer.encode(text)
    if len(ids) <= limit:
        return text, len(ids), len(ids)
    if how == "head":
        kept = ids[:limit]
        return tokenizer.decode(kept), len(kept), len(ids)
    head, tail = ids[: limit - limit // 2], ids[len(ids) - limit // 2 :]
    return tokenizer.decode(head) + tokenizer.decode(tail), len(head) + len(tail), len(ids)
