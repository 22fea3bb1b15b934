"""LongMagpie method logic, driven by a scripted backend (a fake) with the real SmolLM2 tokenizer and template."""

import asyncio
import random

import pytest
from conftest import text

from lcsynth.corpus.readers import Document
from lcsynth.counters import RunCounters
from lcsynth.errors import Reject
from lcsynth.methods.base import MethodContext, unit_rng
from lcsynth.methods.longmagpie import LongMagpieMethod, LongMagpieParams
from lcsynth.prompts.schemas import validation_error

DOC = Document("d1", "The json module encodes and decodes JSON.\n" * 30, {"tokens": 300, "truncated": False})


def run(backend, params=None, doc=DOC, seed=0):
    method = LongMagpieMethod(LongMagpieParams(**(params or {})))
    ctx = MethodContext(backend, [], RunCounters())
    return asyncio.run(method.run(doc, 0, ctx, unit_rng(seed, "longmagpie", doc.id, 0)))


def two_turns(query: str, answer: str = "It returns a str.", finish: str = "stop"):
    def reply(request):
        return text(query) if request.prompt is not None else text(answer, finish)

    return reply


def test_row_is_document_and_query_then_answer(scripted):
    backend = scripted(two_turns("What does json.dumps return? Also"))
    (record,) = run(backend)
    assert record.kind == "sft"
    user, assistant = record.row["messages"]
    assert user == {"role": "user", "content": DOC.text + "\n\nWhat does json.dumps return?"}
    assert assistant == {"role": "assistant", "content": "It returns a str."}
    assert validation_error(record.to_row(), "sft") is None
    meta = record.meta
    assert (meta["method"], meta["doc_id"], meta["sample"], meta["model"]) == ("longmagpie", "d1", 0, "scripted")
    assert meta["templates"] == ["longmagpie/query@1", "longmagpie/answer@1", "longmagpie/sft_row@1"]


def test_query_request_is_the_self_query_prompt_and_answer_request_the_chat(scripted, smol_template):
    backend = scripted(two_turns("Why use json?"))
    run(backend, {"query_max_tokens": 50, "answer_max_tokens": 70, "temperature": 0.3})
    query_request, answer_request = backend.history
    assert query_request.prompt == smol_template.self_query_prompt([{"role": "system", "content": DOC.text}])
    assert query_request.prompt.endswith("<|im_end|>\n<|im_start|>user\n")
    assert "\n" in query_request.stop and query_request.max_tokens == 50
    assert answer_request.message_dicts() == [
        {"role": "system", "content": DOC.text}, {"role": "user", "content": "Why use json?"}]
    assert answer_request.max_tokens == 70 and answer_request.temperature == 0.3


def test_seeds_come_from_the_unit_rng(scripted):
    first, second, other = (scripted(two_turns("Why is JSON text?")) for _ in range(3))
    run(first)
    run(second)
    run(other, seed=1)
    seeds = [r.seed for r in first.history]
    assert seeds == [r.seed for r in second.history]
    assert seeds != [r.seed for r in other.history]
    rng = unit_rng(0, "longmagpie", "d1", 0)
    assert seeds == [rng.randrange(2**31), rng.randrange(2**31)]


@pytest.mark.parametrize(("query", "params", "reason"), [
    ("   ", {}, "empty_query"),
    ("Write a function that sorts a list.", {}, "no_question"),
    ("Why?", {}, "query_too_short"),
    ("Is " + "x" * 1600 + "?", {}, "query_too_long"),
    ("The json module encodes and decodes JSON.\nThe json module encodes and decodes JSON.",
     {"query_filter": "none"}, "query_copies_document"),
    ("is it is it is it is it is it is it is it?", {}, "repetitive_query"),
])
def test_degenerate_queries_are_rejected_with_a_reason(scripted, query, params, reason):
    backend = scripted(two_turns(query))
    with pytest.raises(Reject) as caught:
        run(backend, params)
    assert caught.value.reason == reason
    # each of the query_attempts (3) self-queries used another seed; nothing is paid for answering a rejected one
    assert len(backend.history) == 3 and len({r.seed for r in backend.history}) == 3
    assert all(r.prompt == backend.history[0].prompt for r in backend.history)


def test_a_failed_self_query_is_asked_again_with_another_seed(scripted):
    replies = iter(["A:", "Write a list.", "How does the json module decode JSON?", "It parses text into objects."])

    def reply(request):
        return text(next(replies))

    backend = scripted(reply)
    (record,) = run(backend)
    assert record.row["messages"][0]["content"].endswith("How does the json module decode JSON?")
    assert record.meta["query_attempts"] == 3 and len(backend.history) == 4
    once = scripted(two_turns("Which functions does it offer?"))
    (record,) = run(once, {"query_attempts": 1})
    assert "query_attempts" not in record.meta and len(once.history) == 2


def test_first_line_filter_keeps_instructions(scripted):
    (record,) = run(scripted(two_turns("Write a function that sorts a list.\nMore")), {"query_filter": "first_line"})
    assert record.row["messages"][0]["content"].endswith("\n\nWrite a function that sorts a list.")


@pytest.mark.parametrize(("answer", "finish", "params", "reason"), [
    ("  ", "stop", {}, "empty_answer"),
    ("It returns a string that", "length", {}, "answer_truncated"),
    ("yes no maybe " * 40, "stop", {}, "repetitive_answer"),
])
def test_bad_answers_are_rejected(scripted, answer, finish, params, reason):
    with pytest.raises(Reject, match=reason):
        run(scripted(two_turns("What is JSON?", answer, finish)), params)


def test_truncated_answers_can_be_kept(scripted):
    (record,) = run(scripted(two_turns("What is JSON?", "A text format", "length")), {"keep_truncated_answers": True})
    assert record.row["messages"][1]["content"] == "A text format"


def test_reserved_tokens_cover_both_generations():
    method = LongMagpieMethod(LongMagpieParams(query_max_tokens=100, answer_max_tokens=400))
    assert method.reserved_tokens() >= 500


def test_unit_rng_depends_on_every_part_of_the_unit():
    draws = {unit_rng(*key).random() for key in [(0, "m", "d", 0), (1, "m", "d", 0), (0, "n", "d", 0),
                                                 (0, "m", "e", 0), (0, "m", "d", 1)]}
    assert len(draws) == 5
    assert unit_rng(0, "m", "d", 0).random() == unit_rng(0, "m", "d", 0).random()
    assert isinstance(unit_rng(0, "m", "d", 0), random.Random)


def numbered_dialogue():
    """Every self-query prompt gets a new question (numbered by the turns seen so far), every answer a reply."""

    def reply(request):
        if request.prompt is not None:
            return text(f"What does part {request.prompt.count('<|im_start|>assistant')} of json cover?")
        return text(f"It covers topic number {len(request.messages)} of the module.")

    return reply


def test_multi_turn_dialogue_self_writes_every_user_turn(scripted, smol_template):
    backend = scripted(numbered_dialogue())
    (record,) = run(backend, {"turns": 3})
    messages = record.row["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert messages[0]["content"] == DOC.text + "\n\nWhat does part 0 of json cover?"
    assert [m["content"] for m in messages[2::2]] == ["What does part 1 of json cover?",
                                                      "What does part 2 of json cover?"]
    assert validation_error(record.to_row(), "sft") is None and record.meta["turns"] == 3
    # turn 3's query prompt holds the document and both earlier turns, then stops at the user header
    third = [r for r in backend.history if r.prompt is not None][2]
    history = [{"role": "system", "content": DOC.text}, *messages[:4]]
    history[1] = {"role": "user", "content": "What does part 0 of json cover?"}
    assert third.prompt == smol_template.self_query_prompt(history)
    # the last answer request is the whole conversation so far, ending with the third question
    last = backend.history[-1].message_dicts()
    assert last[0] == {"role": "system", "content": DOC.text} and last[-1]["content"] == messages[4]["content"]
    assert len(last) == 6


def test_a_turn_that_repeats_a_question_rejects_the_dialogue(scripted):
    with pytest.raises(Reject, match="repeated_query"):
        run(scripted(two_turns("What does json.dumps return?")), {"turns": 2})


def test_reserved_tokens_grow_with_turns():
    one = LongMagpieMethod(LongMagpieParams()).reserved_tokens()
    assert LongMagpieMethod(LongMagpieParams(turns=3)).reserved_tokens() == 3 * one


@pytest.fixture
def corpus_store(tmp_path, smol_tokenizer):
    from lcsynth.corpus.store import TokenStore

    docs = [Document(f"doc{i}", f"Document number {i} talks about module m{i}.\n" * (4 + i)) for i in range(12)]
    return TokenStore.open_or_build(tmp_path / "store", lambda: docs, smol_tokenizer), docs


def multi_run(backend, store, params, sample_doc, seed=0, limit=8000):
    method = LongMagpieMethod(LongMagpieParams(**params))
    assert method.needs_store
    ctx = MethodContext(backend, [], RunCounters())
    ctx.store, ctx.document_limit = store, limit
    return asyncio.run(method.run(sample_doc, 0, ctx, unit_rng(seed, "longmagpie", sample_doc.id, 0)))


def test_multi_document_context_has_the_source_once_among_banner_separated_documents(scripted, corpus_store):
    from lcsynth.methods.mixing import DOCUMENT_BANNER

    store, docs = corpus_store
    source = docs[3]
    counts = set()
    for seed in range(12):
        (record,) = multi_run(scripted(two_turns("What does module m3 do?")), store, {"documents": 5}, source, seed)
        user = record.row["messages"][0]["content"]
        ids = record.meta["documents"]
        assert 1 <= len(ids) <= 5 and len(set(ids)) == len(ids) and source.id in ids
        assert user.count(DOCUMENT_BANNER) == len(ids) - 1
        assert user.count(source.text.strip()) == 1 and user.endswith("\n\nWhat does module m3 do?")
        parts = user.rsplit("\n\nWhat does", 1)[0].split(DOCUMENT_BANNER)
        assert parts == [next(d.text.strip() for d in docs if d.id == i) for i in ids]  # in the recorded order
        counts.add(len(ids))
    assert len(counts) >= 3  # the number of documents varies from sample to sample


def test_multi_document_context_stays_within_the_document_limit(scripted, corpus_store, smol_tokenizer):
    store, docs = corpus_store
    limit = 200
    for seed in range(8):
        (record,) = multi_run(scripted(two_turns("What does module m1 do?")), store, {"documents": 10}, docs[1],
                              seed, limit)
        context = record.row["messages"][0]["content"].rsplit("\n\nWhat does", 1)[0]
        assert len(smol_tokenizer.encode(context)) <= limit


def test_p_mix_draws_short_spans_at_the_configured_rate(scripted, smol_tokenizer):
    doc = Document("long", "".join(f"Sentence {i} says something about JSON numbers.\n" for i in range(300)),
                   {"tokens": 3000})
    mixes = []
    for seed in range(200):
        (record,) = run(scripted(two_turns("Why does JSON matter?")), {"long_fraction": 0.4, "short_tokens": 64},
                        doc, seed)
        mixes.append(record.meta["mix"])
        context = record.row["messages"][0]["content"].rsplit("\n\nWhy does", 1)[0]
        if record.meta["mix"] == "short":
            assert context in doc.text and len(smol_tokenizer.encode(context)) <= 64
        else:
            assert context == doc.text
    long_share = mixes.count("long") / len(mixes)
    assert 0.3 < long_share < 0.5  # 0.4 within about three standard deviations (n = 200)


def test_a_cut_answer_is_asked_again_with_another_seed_and_then_rejected(scripted):
    finishes = iter(["length", "stop"])

    def cut_once(request):
        return text("What does it encode?") if request.prompt is not None else text("It encodes objects.",
                                                                                     next(finishes))

    backend = scripted(cut_once)
    (record,) = run(backend)
    answers = [r for r in backend.history if r.prompt is None]
    assert len(answers) == 2 and answers[0].seed != answers[1].seed and answers[0].messages == answers[1].messages
    assert record.meta["answer_attempts"] == 2 and record.row["messages"][1]["content"] == "It encodes objects."
    always_cut = scripted(two_turns("What does it encode?", "It encodes", "length"))
    with pytest.raises(Reject, match="answer_truncated"):
        run(always_cut, {"answer_attempts": 3})
    assert sum(r.prompt is None for r in always_cut.history) == 3
