"""LongMagpie method logic, driven by a scripted backend (a fake) with the real SmolLM2 tokenizer and template."""

import asyncio
import random

import pytest
from conftest import text

from lcsynth.corpus import Document
from lcsynth.errors import Reject
from lcsynth.methods.base import MethodContext, RunCounters, unit_rng
from lcsynth.methods.longmagpie import LongMagpieMethod, LongMagpieParams
from lcsynth.schemas import validation_error

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
    assert len(backend.history) == 1  # nothing is paid for answering a rejected query


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
