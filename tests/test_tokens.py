from lcsynth.tokens import count_tokens, fit_tokens

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
