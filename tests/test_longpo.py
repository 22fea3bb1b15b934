"""LongPO preference pairs (scripted backend, a fake): span and document answers, checks, DPO layout."""

import asyncio
import json

from conftest import text
from test_pipeline import corpus, recipe

from lcsynth.corpus.demo import render_module
from lcsynth.methods.longpo import LEAD_INS
from lcsynth.run.local import run_recipe

QUESTIONS = "1: What does it parse?\n2: Which options exist?\n3: How are errors shown?\n4: What is returned?"


def answers(short: str, long: str, questions: str = QUESTIONS):
    def reply(request):
        messages = request.message_dicts()
        if messages[-1]["content"].rstrip().endswith("write nothing else."):
            return text(questions)
        context = messages[0]["content"]
        return text(short if len(context) < 2000 else long)
    return reply


def run(tmp_path, scripted, reply, name="run", **params):
    docs = [render_module("json"), render_module("textwrap")]
    spec = recipe(corpus(tmp_path, docs), methods=[{"name": "longpo", "chunk_tokens": 256, **params}],
                  output={"name": name}, cache={"enabled": False})
    backend = scripted(reply)
    summary = asyncio.run(run_recipe(spec, backend, show_progress=False))
    summary.requests = backend.history
    return summary, docs


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_pairs_prefer_the_span_answer_and_keep_both_prompts(tmp_path, scripted, smol_tokenizer):
    summary, docs = run(tmp_path, scripted, answers("The span says dumps writes JSON text.",
                                                    "The whole page lists many functions and classes."))
    rows = read(summary.run_dir / "dpo-00000.jsonl")
    assert len(rows) == 2 and summary.rejects == {}
    asked = [r.message_dicts()[-1]["content"] for r in summary.requests if "write nothing else" in str(r.messages)]
    for row, doc, ask in zip(rows, docs, asked, strict=True):
        long_context, short_context = row["prompt"][0]["content"], row["short_prompt"][0]["content"]
        assert ask.startswith(short_context + "\n\nWrite 4 different questions")  # the span is what was read
        assert long_context == doc and short_context in doc and len(short_context) < len(doc)  # x_S inside x_L
        question = row["prompt"][1]["content"]
        assert question == row["short_prompt"][1]["content"] and question.startswith(LEAD_INS)
        asked = question.split(", ", 1)[1]
        assert asked[0].upper() + asked[1:] in QUESTIONS
        assert row["chosen"] == [{"role": "assistant", "content": "The span says dumps writes JSON text."}]
        assert row["rejected"][0]["content"].startswith("The whole page")
        start, end = row["meta"]["chunk_span"]
        assert 0 < end - start <= 256
        assert abs(len(smol_tokenizer.encode(short_context)) - (end - start)) <= 2


def test_unusable_pairs_become_rejects_with_reasons(tmp_path, scripted):
    same, _ = run(tmp_path, scripted, answers("Both contexts give this answer.", "Both contexts give this answer."),
                  "same")
    assert same.rejects == {"identical_answers": 2}
    three, _ = run(tmp_path, scripted, answers("a b", "c d", questions="1: One?\n2: Two?\n3: Three?"), "three")
    assert three.rejects == {"wrong_question_count": 2}
    refusing, _ = run(tmp_path, scripted, answers("I'm sorry, I cannot help with that.", "Fine answer here."),
                      "refusing")
    assert refusing.rejects == {"chosen_refusal": 2}
    (reject,) = read(refusing.run_dir / "rejects.jsonl")[:1]
    assert reject["raw"].startswith("I'm sorry")


def test_bulleted_or_surplus_questions_are_read_and_statements_are_not(tmp_path, scripted):
    """Small models bullet their questions or write one too many; a list of statements still yields nothing."""
    bullets = ('Here are the questions:\n* "What does it parse from text?"\n- Which options change the output?\n'
               '- How are decoding errors shown?\n* What does the call return to you?\n- One more question here?')
    bulleted, _ = run(tmp_path, scripted, answers("The span says dumps writes JSON text.",
                                                   "The whole page lists many functions.", questions=bullets))
    rows = read(bulleted.run_dir / "dpo-00000.jsonl")
    assert len(rows) == 2 and bulleted.rejects == {}
    asked = {r["prompt"][1]["content"] for r in rows}
    assert all(any(q in a for q in ("parse from text", "options change", "decoding errors", "call return"))
               for a in asked)  # the fifth (surplus) question is never used
    statements, _ = run(tmp_path, scripted, answers("a b", "c d", questions="* It parses.\n* It has options.\n"
                                                     "* It shows errors.\n* It returns values."), "statements")
    assert statements.rejects == {"wrong_question_count": 2}


def test_fewer_questions_than_asked_still_serve_and_min_questions_can_ask_for_more(tmp_path, scripted):
    two = "1: What does the module parse from text?\n2: Which options change its output?"
    served, _ = run(tmp_path, scripted, answers("The span says it parses.", "The page says much.", questions=two),
                    "two")
    assert served.rejects == {} and len(read(served.run_dir / "dpo-00000.jsonl")) == 2
    strict, _ = run(tmp_path, scripted, answers("a b", "c d", questions=two), "strict", min_questions=4)
    assert strict.rejects == {"wrong_question_count": 2}
    # each unit asked `attempts` (2) times for questions, with two seeds, before giving up
    asks = [r for r in strict.requests if "write nothing else" in str(r.messages)]
    assert len(asks) == 4 and len({r.seed for r in asks}) == 4


def test_a_cut_answer_is_asked_again_with_another_seed(tmp_path, scripted):
    seen = set()

    def cut_first_short_answer(request):  # the first answer from each span is cut, the second is whole
        messages = request.message_dicts()
        if messages[-1]["content"].rstrip().endswith("write nothing else."):
            return text(QUESTIONS)
        if len(messages[0]["content"]) < 2000:
            first = request.messages not in seen
            seen.add(request.messages)
            return text("The span says", "length") if first else text("The span says it parses.")
        return text("The whole page lists many functions.")

    summary, _ = run(tmp_path, scripted, cut_first_short_answer)
    rows = read(summary.run_dir / "dpo-00000.jsonl")
    assert summary.rejects == {} and len(rows) == 2
    assert all(r["meta"]["attempts"] == {"chosen": 2, "rejected": 1} for r in rows)
    assert all(r["chosen"][0]["content"] == "The span says it parses." for r in rows)
    once, _ = run(tmp_path, scripted, lambda r: text("The span", "length") if "write nothing else" not in
                  str(r.messages) else text(QUESTIONS), "once", attempts=1)
    assert once.rejects == {"chosen_truncated": 2}
