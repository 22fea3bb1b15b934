"""The `template` method with a scripted backend (a fake): parse, validate, lay out, reject."""

import asyncio

import pytest
from conftest import text

from lcsynth.corpus.readers import Document
from lcsynth.counters import RunCounters
from lcsynth.errors import Reject
from lcsynth.methods.base import MethodContext, unit_rng
from lcsynth.methods.template import TemplateMethod, TemplateParams

ASK = """\
name: my/ask
method: template
variables: {document: {type: string}}
messages: [{role: user, content: "{{ document }}\\nAsk and answer in JSON."}]
response_schema: {type: object, properties: {q: {type: string, minLength: 3}, a: {type: string}},
                  required: [q, a], additionalProperties: false}
parse: json
defaults: {max_tokens: 99, temperature: 0.2}
"""
ROW = """\
name: my/row
method: template
variables: {document: {type: string}, output: {type: object}}
messages:
  - {role: user, content: "{{ document }}\\n\\n{{ output.q }}"}
  - {role: assistant, content: "{{ output.a }}"}
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "ask.yaml").write_text(ASK)
    (tmp_path / "t" / "row.yaml").write_text(ROW)
    return str(tmp_path / "t")


def run(backend, folder, **params):
    method = TemplateMethod(TemplateParams(template="my/ask", row_template="my/row", **params))
    ctx = MethodContext(backend, [folder], RunCounters())
    doc = Document("d", "Some document.", {"tokens": 3})
    return asyncio.run(method.run(doc, 0, ctx, unit_rng(0, "template", "d", 0)))


def test_parsed_output_becomes_the_conversation(scripted, folder):
    backend = scripted(lambda r: text('```json\n{"q": "Why?!", "a": "Because."}\n```'))
    (record,) = run(backend, folder)
    assert record.row["messages"] == [{"role": "user", "content": "Some document.\n\nWhy?!"},
                                      {"role": "assistant", "content": "Because."}]
    (request,) = backend.history
    assert request.json_schema["required"] == ["q", "a"]  # sent for constrained decoding
    assert (request.max_tokens, request.temperature) == (99, 0.2)
    assert record.meta["templates"] == ["my/ask@1", "my/row@1"]


def test_unconstrained_requests_send_no_schema(scripted, folder):
    backend = scripted(lambda r: text('{"q": "Why?!", "a": "x"}'))
    run(backend, folder, constrained=False, max_tokens=10)
    assert backend.history[0].json_schema is None and backend.history[0].max_tokens == 10


@pytest.mark.parametrize(("reply", "finish", "reason", "detail"), [
    ('{"q": "Why?!"}', "stop", "invalid_output", "'a' is a required property"),
    ('{"q": 5, "a": "x"}', "stop", "invalid_output", "q: 5 is not of type 'string'"),
    ("not json", "stop", "invalid_json", "no JSON"),
    ('{"q": "Why?!", "a": "Bec', "length", "output_truncated", "max_tokens=99"),
])
def test_bad_outputs_are_rejects_with_the_failing_path(scripted, folder, reply, finish, reason, detail):
    backend = scripted(lambda r: text(reply, finish))
    with pytest.raises(Reject) as caught:
        run(backend, folder)
    assert caught.value.reason == reason and detail in caught.value.detail
    assert caught.value.raw == reply
    # invalid JSON or schema violations are retried with a new seed (2 retries by default); truncation is not
    assert len(backend.history) == (1 if reason == "output_truncated" else 3)
    assert len({r.seed for r in backend.history}) == len(backend.history)


def test_a_retry_with_a_new_seed_can_succeed(scripted, folder):
    replies = iter(["not json", '{"q": "Why?!", "a": "ok"}'])
    backend = scripted(lambda r: text(next(replies)))
    (record,) = run(backend, folder)
    assert record.row["messages"][1]["content"] == "ok" and len(backend.history) == 2
