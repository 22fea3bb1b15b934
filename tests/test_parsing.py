import pytest

from lcsynth.errors import Reject
from lcsynth.prompts.parsing import extract_json, parse_output


@pytest.mark.parametrize(("text", "value"), [
    ('{"a": 1}', {"a": 1}),
    ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
    ('Here you go:\n```\n{"a": "x"}\n```\nanything else?', {"a": "x"}),
    ('Answer: {"a": {"b": "}"}} and then some prose {"c": 2}', {"a": {"b": "}"}}),
    ("[1, 2] trailing", [1, 2]),
])
def test_json_is_found_around_fences_and_prose(text, value):
    assert extract_json(text) == value


@pytest.mark.parametrize(("text", "detail"), [
    ("no json here", "no JSON object or array"),
    ('{"a": 1', "Expecting"),
])
def test_unparseable_json_is_a_reject_that_keeps_the_raw_output(text, detail):
    with pytest.raises(Reject) as caught:
        extract_json(text)
    assert caught.value.reason == "invalid_json" and detail in caught.value.detail and caught.value.raw == text


def test_regex_and_text_parsing():
    assert parse_output("Q: why?\nA: because ", "regex", r"Q:(?P<q>.*?)\nA:(?P<a>.*)") == {"q": "why?", "a": "because"}
    assert parse_output("  plain \n", "text") == "plain"
    with pytest.raises(Reject, match="no_match"):
        parse_output("nothing", "regex", r"Q:(?P<q>.*)")
