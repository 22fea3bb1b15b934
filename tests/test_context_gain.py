"""The context-gain (LongFilter-style) filter: what it scores, how it drops rows, and the scoring backends.

Pipeline tests use the scripted fake backend with a made-up scorer: a token is likely (-1) when it occurred
earlier in what the model sees, unlikely (-5) otherwise, so text that copies the distant context gains.
"""

import asyncio

import pytest
from conftest import ScriptedBackend, text
from fake_openai import FakeOpenAI
from test_pipeline import corpus, read, recipe

from lcsynth.backends.base import can_score
from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.backends.openai_compat import OpenAIBackend
from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError, ConfigError
from lcsynth.run.local import run_recipe
from lcsynth.text.context_gain import scored_text


def recall(tokens):
    """Log-prob of each token after the first: -1 when it appeared before it, else -5."""
    return [-1.0 if tokens[i] in tokens[:i] else -5.0 for i in range(1, len(tokens))]


class RecallBackend(ScriptedBackend):
    scored = 0

    async def score(self, tokens, start):
        self.scored += 1
        return recall(tokens)[start - 1:]


FILLER = "Rain fell on the quiet harbour while gulls circled the empty boats. " * 12
DOCS = ["Remember: the vault code is amber falcon seven. " + FILLER,
        "Remember: the vault code is amber falcon seven. " + FILLER]
ANSWERS = {"doc0": "The vault code is amber falcon seven.", "doc1": "Nobody knows; perhaps ask somebody else."}


def answer_by_doc(request):
    if request.prompt is not None:
        return text("What is the code?")
    seen = " ".join(m["content"] for m in request.message_dicts())
    return text(ANSWERS["doc0"] if "doc zero" in seen else ANSWERS["doc1"])


GAIN = {"name": "context_gain", "short_window": 40, "min_gain": 0.5}


def test_rows_the_distant_context_explains_are_kept_and_others_dropped_with_the_gain(
        tmp_path, smol_tokenizer, smol_template):
    docs = [d.replace("Remember", "In doc zero remember" if i == 0 else "In doc one remember")
            for i, d in enumerate(DOCS)]
    backend = RecallBackend(smol_tokenizer, smol_template, answer_by_doc)
    spec = recipe(corpus(tmp_path, docs), filters=[GAIN], methods=[{"name": "longmagpie"}])
    summary = asyncio.run(run_recipe(spec, backend, show_progress=False))
    rows = read(summary.run_dir / "sft-00000.jsonl")
    assert [r["meta"]["doc_id"] for r in rows] == ["doc0"]
    gain = rows[0]["meta"]["context_gain"]
    assert gain["gain"] > 0.5 and gain["short_window"] == 40 and gain["tokens"] == len(
        smol_tokenizer.encode(ANSWERS["doc0"]))
    (reject,) = read(summary.run_dir / "rejects.jsonl")
    assert reject["doc_id"] == "doc1" and reject["reason"] == "filtered_context_gain"
    assert "nats/token < min_gain 0.5 (window 40 tokens)" in reject["detail"]
    assert backend.scored == 4  # long and short view of each row

    again = RecallBackend(smol_tokenizer, smol_template, answer_by_doc)
    spec = recipe(corpus(tmp_path, docs), filters=[GAIN], methods=[{"name": "longmagpie"}],
                  output={"name": "again"})
    repeat = asyncio.run(run_recipe(spec, again, show_progress=False))
    assert again.scored == 0 and again.history == []  # every call answered by the cache
    assert read(repeat.run_dir / "sft-00000.jsonl")[0]["messages"] == rows[0]["messages"]


def test_a_prompt_within_the_short_window_gains_exactly_zero(tmp_path, smol_tokenizer, smol_template):
    backend = RecallBackend(smol_tokenizer, smol_template, answer_by_doc)
    spec = recipe(corpus(tmp_path, DOCS[:1]), methods=[{"name": "longmagpie"}],
                  filters=[{**GAIN, "short_window": 100_000, "min_gain": -1.0}])
    summary = asyncio.run(run_recipe(spec, backend, show_progress=False))
    (row,) = read(summary.run_dir / "sft-00000.jsonl")
    assert row["meta"]["context_gain"]["gain"] == 0 and backend.scored == 1


def test_a_backend_without_log_probs_fails_before_any_request(tmp_path, scripted):
    backend = scripted(answer_by_doc)
    assert not can_score(backend)
    with pytest.raises(ConfigError, match=r"^filters.0 \(context_gain\): backend scripted returns no log-probs"):
        asyncio.run(run_recipe(recipe(corpus(tmp_path, DOCS), filters=[GAIN]), backend, show_progress=False))
    assert backend.history == []


def test_what_is_scored_for_each_row_kind(smol_tokenizer, smol_template):
    messages = [{"role": "user", "content": "Doc.\n\nWhat?"}, {"role": "assistant", "content": "An answer."}]
    sft = scored_text("sft", {"messages": messages}, smol_tokenizer, smol_template, 8)
    answer = smol_tokenizer.encode("An answer.")
    assert sft.tokens[sft.start:] == answer and smol_tokenizer.decode(sft.tokens[:sft.start]).endswith(
        "assistant\n")
    dpo = scored_text("dpo", {"prompt": messages[:1], "chosen": messages[1:], "rejected": []}, smol_tokenizer,
                      smol_template, 8)
    assert dpo == sft
    body = smol_tokenizer.encode("one two three four five six seven eight nine ten eleven twelve")
    pretrain = scored_text("pretrain", {"text": smol_tokenizer.decode(body)}, smol_tokenizer, smol_template, 8)
    assert pretrain.tokens == body and len(body) - pretrain.start == 8
    assert scored_text("grpo", {"prompt": messages[:1], "ground_truth": ["x"]}, smol_tokenizer, smol_template,
                       8) is None


def openai_spec(server):
    return BackendSpec(type="openai", model="fake", base_url=server.url, tokenizer=str(bundled_gguf()),
                       context_length=2048, max_retries=0)


def test_openai_backend_scores_through_echoed_prompt_log_probs():
    async def go():
        async with FakeOpenAI(scorer=recall) as server:
            backend = OpenAIBackend(openai_spec(server))
            values = await backend.score([5, 6, 5, 7, 6], 2)
            await backend.aclose()
            return values, server.bodies[0]

    values, body = asyncio.run(go())
    assert values == [-1.0, -5.0, -1.0]
    assert body["prompt"] == [5, 6, 5, 7, 6] and body["echo"] is True and body["logprobs"] == 0


def test_openai_server_without_prompt_log_probs_is_a_one_line_error():
    async def go():
        async with FakeOpenAI() as server:
            backend = OpenAIBackend(openai_spec(server))
            try:
                await backend.score([5, 6, 7], 1)
            finally:
                await backend.aclose()

    with pytest.raises(BackendError, match="returned no prompt log-probs"):
        asyncio.run(go())


@pytest.mark.model
def test_llamacpp_scores_match_a_full_logits_reference_and_copies_gain_far_more_than_controls():
    import random

    from llama_cpp import Llama

    from lcsynth.backends.llamacpp import LlamaCppBackend, picked_logprobs
    from lcsynth.corpus.demo import render_module

    backend = LlamaCppBackend.from_spec(BackendSpec(context_length=1024))
    try:
        passage = backend.tokenizer.encode(render_module("json"))[:300]
        copy = passage + passage  # the second half repeats the first: the distant context explains it
        unrelated = backend.tokenizer.encode(render_module("textwrap"))[:300] + passage
        words = backend.tokenizer.decode(passage).split(" ")
        random.Random(0).shuffle(words)
        shuffled = backend.tokenizer.encode(" ".join(words))[:300] + passage  # same words, order destroyed

        def gain(tokens):
            start = len(tokens) - 200
            long = asyncio.run(backend.score(tokens, start))
            short = asyncio.run(backend.score(tokens[start - 64:], 64))
            return sum(long) / len(long) - sum(short) / len(short), long

        copy_gain, copy_long = gain(copy)
        assert copy_gain > 1.0
        for control in (unrelated, shuffled):
            assert copy_gain > 3 * gain(control)[0]
        # the prefix the worker kept from the last call is reused: the result must not depend on it
        again = asyncio.run(backend.score(copy, len(copy) - 200))
        assert again == copy_long
    finally:
        asyncio.run(backend.aclose())
    reference = Llama(model_path=str(bundled_gguf()), n_ctx=1024, logits_all=True, verbose=False)
    reference.eval(copy)
    expected = picked_logprobs(reference.scores[len(copy) - 201: len(copy) - 1], copy[len(copy) - 200:])
    assert max(abs(a - b) for a, b in zip(copy_long, expected, strict=True)) < 1e-3
    reference.close()

