from lcsynth.text.tokens import count_tokens, fit_tokens

TEXT = "The quick brown fox jumps over the lazy dog. " * 50


def test_encode_decode_round_trip(smol_tokenizer):
    ids = smol_tokenizer.encode(TEXT)
    assert smol_tokenizer.decode(ids) == TEXT
    assert count_tokens(smol_tokenizer, TEXT) == len(ids)


def test_text_that_fits_is_unchanged(smol_tokenizer):
    n = count_tokens(smol_tokenizer, TEXT)
    assert fit_tokens(smol_tokenizer, TEXT, n, "head_tail") == (TEXT, n, n)


def test_head_keeps_the_first_tokens(smol_tokenizer):
    ids = smol_tokenizer.encode(TEXT)
    text, kept, total = fit_tokens(smol_tokenizer, TEXT, 101, "head")
    assert (kept, total) == (101, len(ids))
    assert text == smol_tokenizer.decode(ids[:101])


def test_head_tail_keeps_both_halves(smol_tokenizer):
    body = "alpha " * 300 + "omega " * 300
    ids = smol_tokenizer.encode(body)
    text, kept, _ = fit_tokens(smol_tokenizer, body, 101, "head_tail")
    assert kept == 101
    assert text == smol_tokenizer.decode(ids[:51]) + smol_tokenizer.decode(ids[-50:])
    assert text.startswith("alpha") and text.rstrip().endswith("omega")


def test_hf_tokenizer_from_a_local_folder(tmp_path):
    """A real `transformers` tokenizer, trained here on demo text (nothing is downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from lcsynth.corpus.demo import DEMO_MODULES, iter_demo_documents
    from lcsynth.text.tokens import HFTokenizer, load_tokenizer

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator([d.text for d in iter_demo_documents(DEMO_MODULES[:2])],
                            trainers.BpeTrainer(vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=raw).save_pretrained(tmp_path / "tok")

    tokenizer = load_tokenizer(str(tmp_path / "tok"))
    assert isinstance(tokenizer, HFTokenizer)
    ids = tokenizer.encode(TEXT)
    assert tokenizer.decode(ids) == TEXT and count_tokens(tokenizer, TEXT) == len(ids)
    text, kept, total = fit_tokens(tokenizer, TEXT, 40, "head")
    assert (kept, total) == (40, len(ids)) and TEXT.startswith(text)


def test_unloadable_tokenizer_is_a_config_error(tmp_path):
    import pytest

    from lcsynth.errors import ConfigError
    from lcsynth.text.tokens import load_tokenizer

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_tokenizer(str(tmp_path / "empty"))
