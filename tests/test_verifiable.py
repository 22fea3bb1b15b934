"""Verifiable QA rows (scripted backend, a fake): the answer must be a span of the document."""

import asyncio
import json
import re

import pytest
from conftest import text

from lcsynth.corpus.readers import Document
from lcsynth.counters import RunCounters
from lcsynth.errors import Reject
from lcsynth.methods.base import MethodContext, unit_rng
from lcsynth.methods.verifiable import VerifiableMethod, VerifiableParams
from lcsynth.prompts.schemas import validation_error
from lcsynth.rewards import grpo_reward

DOC = Document("d1", "".join(f"Section {i}. The limit for region {i} is {i * 37} units per day.\n"
                             for i in range(1, 80)), {"tokens": 1500})


def run(backend, params=None, seed=0):
    method = VerifiableMethod(VerifiableParams(**(params or {})))
    ctx = MethodContext(backend, [], RunCounters())
    return asyncio.run(method.run(DOC, 0, ctx, unit_rng(seed, "verifiable", DOC.id, 0)))


def qa(question, answer):
    return lambda request: text(json.dumps({"question": question, "answer": answer}))


def test_row_asks_over_the_whole_document_and_keeps_the_span_answer(scripted):
    backend = scripted(qa("What is the daily limit for region 12?", "444 units per day"))
    (record,) = run(backend, {"span_tokens": 128})
    assert record.kind == "grpo" and validation_error(record.to_row(), "grpo") is None
    assert record.row["ground_truth"] == ["444 units per day"]
    system, user = record.row["prompt"]
    assert DOC.text in user["content"] and "What is the daily limit for region 12?" in user["content"]
    assert "\\boxed" in system["content"]
    meta = record.meta
    assert DOC.text[meta["answer_char_offset"]:].startswith("444 units per day")
    start, end = meta["passage_chars"]
    (request,) = backend.history
    passage = request.message_dicts()[1]["content"]
    assert passage == DOC.text[start:end].strip() and meta["passage_tokens"] <= 128
    assert request.json_schema["$id"] == "verifiable_qa.json"  # the backend may constrain decoding to it
    # the reward the row is trained with accepts the boxed span and refuses another value
    prompt = [record.row["prompt"]]
    assert grpo_reward(prompts=prompt, completions=["so \\boxed{444 units per day}"],
                       ground_truth=[record.row["ground_truth"]]) == [1.0]
    assert grpo_reward(prompts=prompt, completions=["\\boxed{481 units}"],
                       ground_truth=[record.row["ground_truth"]]) == [0.0]


@pytest.mark.parametrize(("question", "answer", "reason"), [
    ("What is the daily limit for region 12?", "445 units per day", "answer_not_in_document"),
    ("What is the daily limit for region 12?", "444 units a day", "answer_not_in_document"),
    ("Is 444 units per day the limit of region 12?", "444 units per day", "answer_in_question"),
    ("What does section 3 say?", "The limit for region 3 is 111 units per day.\nSection 4. The limit",
     "answer_too_long"),
    ("What is the limit?", ".", "answer_is_punctuation"),
    ("No question mark here", "444", "invalid_qa"),
])
def test_unverifiable_answers_are_rejected(scripted, question, answer, reason):
    with pytest.raises(Reject) as caught:
        run(scripted(qa(question, answer)), {"max_answer_words": 8})
    assert caught.value.reason == reason


def test_case_and_spacing_may_differ_but_the_ground_truth_is_the_documents_own_span(scripted):
    (record,) = run(scripted(qa("What is the daily limit for region 12?", "444  UNITS per\nday")))
    assert record.row["ground_truth"] == ["444 units per day"]


def test_cut_off_and_broken_json_are_rejected(scripted):
    with pytest.raises(Reject, match="qa_truncated"):
        run(scripted(lambda r: text('{"question": "What', "length")))
    with pytest.raises(Reject, match="invalid_json"):
        run(scripted(lambda r: text("not json")))


def near_words(request, count=3):
    """Content words from the passage right before the picked answer, as a grounded question would use."""
    passage, answer = request.message_dicts()[-1]["content"].rsplit("\n\nAnswer: ", 1)
    before = passage[: passage.find(answer)][-200:]
    words = [w for w in re.findall(r"[a-z]{5,}", before.lower()) if w not in answer.lower()]
    return " ".join(words[-count:])


def test_answer_first_mode_picks_the_answer_in_the_passage_and_asks_for_a_question(scripted):
    def ask(request):
        return text(json.dumps({"question": f"Which value goes with {near_words(request)}?"}))

    backend = scripted(ask)
    (record,) = run(backend, {"answers": "passage", "span_tokens": 96})
    (request,) = backend.history
    passage, picked = request.message_dicts()[-1]["content"].removeprefix("Passage:\n").rsplit("\n\nAnswer: ", 1)
    assert picked in passage and record.row["ground_truth"] == [picked]
    assert request.json_schema["$id"] == "verifiable_question.json"
    assert record.meta["templates"][0] == "verifiable/question@1"


def test_answer_first_mode_rejects_a_question_about_something_else(scripted):
    def ask(request):
        return text(json.dumps({"question": "How does the PXH bridge support interrupts?"}))

    with pytest.raises(Reject, match="question_not_about_answer"):
        run(scripted(ask), {"answers": "passage"})
    (record,) = run(scripted(ask), {"answers": "passage", "min_question_overlap": 0})  # the check can be turned off
    assert record.row["ground_truth"]


def test_answer_first_mode_rejects_a_question_that_gives_the_answer_away(scripted):
    def ask(request):
        answer = request.message_dicts()[-1]["content"].rsplit("Answer: ", 1)[1]
        return text(json.dumps({"question": f"Is it {answer}?"}))

    with pytest.raises(Reject, match="answer_in_question"):
        run(scripted(ask), {"answers": "passage"})
