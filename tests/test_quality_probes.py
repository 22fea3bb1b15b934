"""The training experiment's probes and scorers (bench/quality): known answers, placement, lengths, and that
the probes share nothing with lcsynth's own templates."""

import random
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.quality.probes import LONG_TASKS, Haystack, ProbeBuilder, build_suite, place, short_instructions
from bench.quality.scoring import interval, mentions, score, summarise

ROOT = Path(__file__).resolve().parents[1]
HAY = [("Perl borrows ideas from many languages. It has arrays and hashes. Regular expressions are built in. "
        "Scripts run anywhere a perl binary exists. Modules extend the core. ") * 40,
       ("The debugger steps through code one statement at a time. Breakpoints stop a running program. "
        "Watch expressions print values when they change. ") * 40]


@pytest.fixture(scope="module")
def builder(smol_tokenizer):
    def count(texts):
        return [len(smol_tokenizer.encode(t)) for t in texts]

    words = sorted({w.lower() for t in HAY for w in re.findall(r"[A-Za-z]{4,10}", t)} |
                   {f"word{c}{d}" for c in "abcdefghij" for d in "abcdefghij"})
    return ProbeBuilder(Haystack.from_texts(HAY, count), count, words), count


def chain_values(prompt):
    """Resolve the Set/Copy instructions of a variable-tracking prompt by code: register -> value."""
    values = {}
    for kind, a, b in re.findall(r"(Set|Copy) register (\w+) (?:to|into register) (\w+)\.", prompt):
        if kind == "Set":
            values[a] = b
        else:
            values[b] = values[a]
    return values


@pytest.mark.parametrize("task", LONG_TASKS)
@pytest.mark.parametrize("length", [512, 2000])
def test_each_task_has_its_answer_in_the_prompt_at_about_the_length(builder, task, length):
    build, count = builder
    items = build.build(task, length, 10, seed=3)
    assert len({it["prompt"] for it in items}) == 10  # every item is its own
    for it in items:
        assert 0.9 * length <= count([it["prompt"]])[0] <= 1.06 * length
        assert all(g in it["prompt"] for g in it["answers"])
        assert set(it["answers"]) <= set(it["candidates"])
        assert score(it, ", ".join(it["answers"])) == 1.0  # an oracle scores full marks
        assert score(it, "") == 0.0


def test_needle_sits_at_its_depth(builder):
    build, _ = builder
    for it in build.build("needle_single", 2000, 10, seed=5):
        at = it["prompt"].index(it["answers"][0]) / len(it["prompt"])
        assert abs(at - it["depth"]) < 0.12


def test_variable_tracking_answer_is_what_the_instructions_compute(builder):
    build, _ = builder
    for it in build.build("variable_tracking", 2000, 10, seed=7):
        value = re.search(r"holding the value (\d+)", it["prompt"]).group(1)
        values = chain_values(it["prompt"].split("Question:")[0])
        assert sorted(r for r, v in values.items() if v == value) == sorted(it["answers"])
        assert len(values) == len(it["candidates"]) == 8


def test_word_frequency_answer_is_the_true_top_three(builder):
    build, _ = builder
    for it in build.build("word_frequency", 2000, 5, seed=9):
        words = re.findall(r"^\d+\. (\S+)$", it["prompt"], flags=re.M)
        counts = Counter(words).most_common()
        assert sorted(w for w, _ in counts[:3]) == sorted(it["answers"])
        assert counts[2][1] >= 3 * counts[3][1]  # the top three stand well clear of the rest


def test_passage_answer_is_stated_for_the_person_asked(builder):
    build, _ = builder
    for it in build.build("passage_qa", 2000, 10, seed=11):
        person = re.search(r"did ([A-Z]\w+ [A-Z]\w+)|was ([A-Z]\w+ [A-Z]\w+)'s", it["prompt"])
        name = person.group(1) or person.group(2)
        sentence = re.search(rf"{name} opened a workshop for ([a-z ]+) in (\w+) in the year (\d+)", it["prompt"])
        assert it["answers"][0] in sentence.groups()


def test_hedging_and_guessing_do_not_score(builder):
    build, _ = builder
    multikey = build.build("needle_multikey", 2000, 20, seed=13)
    assert sum(score(it, " ".join(it["candidates"])) for it in multikey) == 0  # every number listed: nothing
    tracking = build.build("variable_tracking", 2000, 20, seed=13)
    listed_all = [score(it, ", ".join(it["candidates"])) for it in tracking]
    assert max(listed_all) <= 5 / 8 + 1e-9  # listing every register is paid gold/candidates at most
    rng = random.Random(0)
    guesses = [score(it, rng.choice(it["candidates"])) for it in multikey]
    assert sum(guesses) / len(guesses) < 0.5
    assert score(multikey[0], multikey[1]["answers"][0]) == 0.0  # another item's answer


def test_mentions_needs_whole_words():
    assert mentions("The number is 1234567.", "1234567")
    assert not mentions("12345678", "1234567") and not mentions("cobaltlantern", "cobalt lantern")
    assert mentions("Boat  building.", "boat building")


def test_summary_cells_and_intervals(builder):
    build, _ = builder
    suite = build_suite(build, (2000, 4000), per_cell=4, seed=1, short_length=512, short_per_task=2, instructions=10)
    perfect = {it["id"]: ", ".join(it["answers"]) for it in suite}
    summary = summarise(suite, perfect)
    assert summary["avg_4k_8k"] == 100.0 and summary["short"]["mean"] == 100.0
    assert set(summary["by_length"]) == {"2000", "4000"}
    assert len(summary["cells"]) == 2 * len(LONG_TASKS) + len(LONG_TASKS) + 1
    nothing = summarise(suite, {})
    assert nothing["avg_all_long"] == 0.0
    assert interval([1.0] * 10) == (100.0, 100.0, 100.0)
    low = interval([1.0, 0.0] * 50)
    assert low[0] == 50.0 and 39 < low[1] < 41 and 59 < low[2] < 61


def test_short_instructions_have_one_right_answer():
    items = short_instructions(50, seed=0)
    assert len(items) == 50 and len({it["task"] for it in items}) == 5
    adds = [it for it in items if it["task"] == "instruction_add"]
    for it in adds:
        a, b = map(int, re.findall(r"\d+", it["prompt"]))
        assert it["answers"] == [str(a + b)]


def test_place_puts_inserts_at_their_depths():
    text = place(["a.", "b.", "c.", "d."], [(0.0, "X"), (0.5, "Y"), (1.0, "Z")])
    assert text == "X a. b. Y c. d. Z"


def test_probes_share_no_wording_with_lcsynth_templates(builder):
    """No sentence of any shipped template (nor the boxed-answer or UUID-key formats) appears in a probe."""
    build, _ = builder
    suite = build_suite(build, (2000,), per_cell=3, seed=2, short_length=512, short_per_task=2, instructions=20)
    prompts = "\n".join(it["prompt"] for it in suite)
    phrases = set()
    for path in (ROOT / "templates").rglob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        for value in _strings(data):
            phrases |= {p.strip() for p in re.split(r"[.\n{}]", value) if len(p.strip()) >= 25}
    assert phrases and not [p for p in phrases if p in prompts]
    assert "\\boxed" not in prompts and not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", prompts)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
