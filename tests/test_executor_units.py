"""Units and outcomes as they travel to replicas and back (no Ray needed): exact round trips, the resumed plan."""

import json

from test_pipeline import corpus, recipe

from lcsynth.corpus.readers import Document
from lcsynth.counters import RunCounters
from lcsynth.errors import ConfigError, MissingExtra, Reject
from lcsynth.methods.base import Record, create_method
from lcsynth.out.sink import dump_line
from lcsynth.run.plan import Unit
from lcsynth.run.units import (
    NO_UNIT,
    decode_error,
    decode_outcome,
    decode_unit,
    encode_error,
    encode_outcome,
    encode_unit,
    planned_units,
)

TEXTS = [f"The doc says item{i}. " * 20 for i in range(4)] + ["short"]


def methods_of(spec):
    return [create_method(m, i) for i, m in enumerate(spec.methods)]


def test_units_and_outcomes_come_back_as_they_left(tmp_path):
    spec = recipe(corpus(tmp_path, TEXTS), methods=[{"name": "longmagpie"}, {"name": "longmagpie", "turns": 2}])
    methods = methods_of(spec)
    doc = Document("d1", "text ü", {"tokens": 3, "token_spans": [[0, 2], [5, 6]], "source": "c.jsonl"})
    unit, attempt = decode_unit(encode_unit(Unit(7, methods[1], doc, 2), methods, attempt=3), methods)
    assert (unit.index, unit.method, unit.doc, unit.sample, unit.skip, attempt) == (7, methods[1], doc, 2, None, 3)
    skipped, _ = decode_unit(encode_unit(Unit(8, None, doc, None, Reject("document_too_short", "5 chars")), methods),
                             methods)
    assert skipped.method is None and (skipped.skip.reason, skipped.skip.detail) == ("document_too_short", "5 chars")

    row = {"messages": [{"role": "user", "content": "q \u2028 ü"}], "x": 0.1 + 0.2, "n": 10**20, "t": (1, 2)}
    record = Record("sft", row, {"sample": 2, "gain": -1.0000000000000002})
    usage = RunCounters(requests=2, cache_hits=1, prompt_tokens=30, completion_tokens=7)
    back, outcome, counts = decode_outcome(encode_outcome(unit, methods, [record], usage), methods)
    assert (back.index, back.method, back.doc.id, back.sample) == (7, methods[1], "d1", 2)
    assert back.doc.meta["token_spans"] == [[0, 2], [5, 6]] and counts == usage
    assert dump_line(outcome[0].to_row()) == dump_line(record.to_row())  # the bytes a shard gets are unchanged

    reject = Reject("no_question", "empty", raw="raw text")
    reject.request_hash = "v1:abc"
    _, outcome, counts = decode_outcome(encode_outcome(unit, methods, reject, usage), methods)
    assert (outcome.reason, outcome.detail, outcome.raw, outcome.request_hash) == ("no_question", "empty",
                                                                                    "raw text", "v1:abc")


def test_errors_keep_their_class_and_message():
    for error in (ConfigError("filters.0: context_gain needs a backend that scores"),
                  MissingExtra("vllm", "vllm", "the vllm backend")):
        back = decode_error(encode_error(error))
        assert type(back) is type(error) and str(back) == str(error)
    assert str(decode_error(json.dumps(["NotAnLcsynthError", "boom"]))) == "boom"


def test_a_resumed_plan_is_the_tail_of_the_whole_plan_and_counts_every_document(tmp_path):
    spec = recipe(corpus(tmp_path, TEXTS), corpus={"min_chars": 20})
    attempts = {json.dumps(["longmagpie", "doc2", 1]): 2}
    whole = list(planned_units(spec, None, 0, attempts))
    assert [index for index, _, _ in whole] == list(range(9))  # 4 documents x 2 samples, then the short one
    methods = methods_of(spec)
    units = [decode_unit(text, methods) for _, text, _ in whole]
    assert [(u.doc.id, u.sample, a) for u, a in units][4:6] == [("doc2", 0, 0), ("doc2", 1, 2)]
    assert units[8][0].skip.reason == "document_too_short" and units[0][0].doc.meta["tokens"] > 0
    tail = list(planned_units(spec, None, 5, attempts))
    assert [(i, text) for i, text, _ in tail] == [(i, text) for i, text, _ in whole[5:]]

    def totals(plan):
        return {key: sum(counts[key] for _, _, counts in plan) for key in plan[0][2]}

    assert totals(tail) == totals(whole) and totals(whole)["documents_read"] == 5
    done = list(planned_units(spec, None, 9, attempts))
    assert [(i, text) for i, text, _ in done] == [(NO_UNIT, "")] and totals(done) == totals(whole)
