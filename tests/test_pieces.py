"""The piece cache gives exactly llama.cpp's token ids, for every pre-tokenizer it knows, and falls back safely."""

from __future__ import annotations

import pickle

import pytest
from llama_cpp import Llama

from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.corpus.demo import iter_demo_documents
from lcsynth.text.pieces import PRE_TOKENIZERS, PieceCache, splitter
from lcsynth.text.tokens import PROBE, LlamaCppTokenizer, _quiet_stderr, count_tokens, fit_tokens, load_tokenizer


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """The probe text and slices of real documents (code, prose, tables, every kind of whitespace)."""
    docs = [doc.text for doc, _ in zip(iter_demo_documents(), range(12), strict=False)]
    return [PROBE, *(doc[:20_000] for doc in docs)]


def llama_cpp_with(pre: str) -> LlamaCppTokenizer:
    """The bundled vocabulary, tokenized by llama.cpp as if its GGUF named pre-tokenizer `pre`."""
    with _quiet_stderr():
        llama = Llama(model_path=str(bundled_gguf()), vocab_only=True, verbose=False,
                      kv_overrides={"tokenizer.ggml.pre": pre})
    return LlamaCppTokenizer(llama, name=pre)


@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZERS))
def test_same_ids_as_llama_cpp_for_every_known_pre_tokenizer(pre, texts):
    reference = llama_cpp_with(pre)
    cache = PieceCache(splitter(pre), reference._encode_whole, reference._token_bytes)
    for text in texts:
        expected = reference._encode_whole(text)
        assert cache.encode(text) == expected
        assert cache.count(text) == len(expected)


def test_a_wrong_pre_tokenizer_is_caught(texts):
    # gpt-2 keeps digit runs together where smollm splits every digit: the ids differ on real text
    reference = llama_cpp_with("smollm")
    wrong = PieceCache(splitter("gpt-2"), reference._encode_whole, reference._token_bytes)
    assert any(wrong.encode(t) != reference._encode_whole(t) for t in texts)


def test_new_pieces_are_learned_together_and_memory_is_bounded(texts):
    reference = llama_cpp_with("smollm")
    calls = []

    def counting(text: str) -> list[int]:
        calls.append(text)
        return reference._encode_whole(text)

    cache = PieceCache(splitter("smollm"), counting, reference._token_bytes, max_pieces=3_000)
    for text in texts:
        assert cache.encode(text) == reference._encode_whole(text)
    pieces = sum(len(splitter("smollm")(t)) for t in texts)
    assert len(calls) < pieces / 20  # whole documents' new pieces went to llama.cpp in a few calls
    assert len(cache._ids) <= 3_000 + max(len(set(splitter("smollm")(t))) for t in texts)


def test_the_bundled_tokenizer_uses_the_cache_and_checks_it(texts, caplog):
    tokenizer = load_tokenizer(str(bundled_gguf()))
    assert isinstance(tokenizer, LlamaCppTokenizer) and tokenizer._cache is not None
    assert [tokenizer.encode(t) for t in texts] == [tokenizer._encode_whole(t) for t in texts]
    assert count_tokens(tokenizer, texts[1]) == len(tokenizer._encode_whole(texts[1]))
    text, kept, total = fit_tokens(tokenizer, texts[1], 100, "head")
    assert (kept, total) == (100, len(tokenizer._encode_whole(texts[1])))
    assert text == tokenizer.decode(tokenizer._encode_whole(texts[1])[:100])

    # a cache that disagrees with llama.cpp is noticed by the sampled check and switched off
    wrong = PieceCache(splitter("gpt-2"), tokenizer._encode_whole, tokenizer._token_bytes)
    differing = next(t for t in texts if wrong.encode(t) != tokenizer._encode_whole(t))
    tokenizer._cache = wrong
    for _ in range(tokenizer.verify_every):
        tokenizer.encode(differing)
    assert tokenizer._cache is None and "disagreed" in caplog.text
    assert tokenizer.encode(differing) == tokenizer._encode_whole(differing)


def test_unknown_pre_tokenizers_tokenize_whole():
    assert splitter("no-such-pre-tokenizer") is None
    tokenizer = llama_cpp_with("smollm")
    tokenizer._llama.metadata["tokenizer.ggml.pre"] = "no-such-pre-tokenizer"
    assert tokenizer._piece_cache() is None


def test_tokenizers_travel_to_worker_processes_by_path():
    tokenizer = load_tokenizer(str(bundled_gguf()))
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy.name == tokenizer.name and copy.encode(PROBE) == tokenizer.encode(PROBE)
    with pytest.raises(TypeError, match="not a GGUF path"):
        pickle.dumps(llama_cpp_with("smollm"))
