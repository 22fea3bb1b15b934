"""KeyChain as LoongRL builds it: chain count, distinct decoys, a seeded item order, guessable items, SFT rows.

Runs use the `none` backend on the demo corpus (no model), as in test_construct.
"""

import json
import logging
import re
from collections import Counter

import pytest
from test_construct import construct

from lcsynth.methods.keychain import KEY_PATTERNS, resolve
from lcsynth.methods.keychain_qa import draw_decoys, guessable, item_passages, load_qa
from lcsynth.rewards import keychain_reward

HEX8 = KEY_PATTERNS["hex8"]
SMALL = {"name": "keychain", "qa": "demo", "max_items": 8, "lengths": {"targets": ["4k"]}}


@pytest.fixture(scope="module")
def demo_rows(tmp_path_factory):
    return construct(tmp_path_factory.mktemp("kc"), SMALL)[1]["grpo"]


def test_items_come_in_a_seeded_order_from_the_whole_set(demo_rows, tmp_path):
    modules = Counter(row["meta"]["source_doc"] for row in demo_rows)
    assert len(demo_rows) == 8 and len(modules) >= 4  # corpus order gave 8 rows of one module
    again = construct(tmp_path, SMALL, name="again")[1]["grpo"]
    assert [r["meta"]["qa_id"] for r in again] == [r["meta"]["qa_id"] for r in demo_rows]
    other = construct(tmp_path, SMALL, name="other", seed=1)[1]["grpo"]
    assert [r["meta"]["qa_id"] for r in other] != [r["meta"]["qa_id"] for r in demo_rows]


def test_every_chain_ends_at_a_distinct_question(demo_rows):
    for row in demo_rows:
        meta, user = row["meta"], row["prompt"][-1]["content"]
        chains = meta["chain"]["chains"]
        assert chains == 16 and meta["decoy_questions"] == chains - 1  # 4 per 1,024 tokens at 4K
        heads = [link["key"] for link in meta["chain"]["links"] if link["hop"] == 0]
        endings = [resolve(user, head, 10, HEX8)[1] for head in heads]
        assert len(set(endings)) == chains and meta["question"] in endings
        assert resolve(user, meta["chain"]["head"], 10, HEX8)[1] == meta["question"]


def test_decoys_are_distinct_while_the_pool_allows_and_a_small_pool_warns(tmp_path, caplog):
    import random

    pool = [f"Q{i}?" for i in range(6)]
    assert sorted(draw_decoys(pool, "Q0?", 5, random.Random(0))) == pool[1:]
    repeated = draw_decoys(pool, "Q0?", 12, random.Random(0))
    assert len(repeated) == 12 and set(repeated) == set(pool[1:]) and max(Counter(repeated).values()) <= 3
    lines = [{"question": f"Which value does item {i} hold?", "answer": f"value {i * 7}",
              "paragraphs": [f"Item {i} holds value {i * 7}."]} for i in range(3)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with caplog.at_level(logging.WARNING, logger="lcsynth.methods.keychain_qa"):
        _, rows = construct(tmp_path, {"name": "keychain", "qa": str(path), "lengths": {"targets": ["4k"]}})
    assert "3 distinct questions for up to 15 decoy chains" in caplog.text
    assert len(rows["grpo"]) == 3 and all(r["meta"]["decoy_questions"] == 2 for r in rows["grpo"])


def test_guessable_items_are_rejected_unless_kept(tmp_path):
    lines = [
        {"question": "Which came first, Arthur's Magazine or First for Women?", "answer": "Arthur's Magazine"},
        {"question": "Were Scott Derrickson and Ed Wood both American?", "answer": "yes"},
        {"question": "How many moons does the planet in passage two have?", "answer": "2"},
        {"question": "Who directed the film that starred the singer?", "answer": "Scott Derrickson"},
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({**line, "paragraphs": ["A short note."]}) + "\n" for line in lines))
    method = {"name": "keychain", "qa": str(path), "lengths": {"targets": ["4k"]}}
    summary, rows = construct(tmp_path, method)
    assert len(rows["grpo"]) == 1 and summary.rejects == {"answer_guessable": 3}
    assert rows["grpo"][0]["ground_truth"] == ["Scott Derrickson"]
    _, kept = construct(tmp_path, {**method, "keep_guessable": True}, name="kept")
    assert len(kept["grpo"]) == 4
    assert guessable("What is the full signature of the function `getcwd` of the `os` module?", ["getcwd()"])


def test_sft_form_answers_with_the_chain_and_the_boxed_gold(tmp_path):
    summary, rows = construct(tmp_path, {**SMALL, "max_items": 3, "form": "sft"})
    assert "grpo" not in rows and len(rows["sft"]) == 3 and summary.rejects == {}
    for row in rows["sft"]:
        *prompt, answer = row["messages"]
        meta, user = row["meta"], prompt[-1]["content"]
        assert answer["role"] == "assistant" and [m["role"] for m in prompt] == ["system", "user"]
        head = meta["chain"]["head"]
        visited, question = resolve(user, head, 10, HEX8)
        assert question == meta["question"] and f"the chain goes {' → '.join(visited)} →" in answer["content"]
        gold = re.search(r"\\boxed\{(.*)\}\.$", answer["content"]).group(1)
        assert gold in user and keychain_reward(answer["content"], [gold]) == 1.0
    _, bare = construct(tmp_path, {**SMALL, "max_items": 1, "form": "sft", "sft_reasoning": False}, name="bare")
    assert bare["sft"][0]["messages"][-1]["content"].startswith("The answer is \\boxed{")


def test_a_context_free_guesser_scores_nothing_on_keychain_rows(demo_rows):
    """Guesses from the question alone (names it mentions, called with nothing, x, self or *args), and the
    most common gold of the set, earn a mean reward of at most 0.02."""
    golds = Counter(row["ground_truth"][0] for row in demo_rows)
    scores = []
    for row in demo_rows:
        question = row["meta"]["question"]
        function, module = re.findall(r"`([^`]+)`", question)
        guesses = [function, module, f"{module}.{function}", f"{function}()", f"{function}(x)", f"{function}(self)",
                   f"{function}(*args, **kwargs)", question, golds.most_common(1)[0][0]]
        scores.extend(keychain_reward(f"\\boxed{{{g}}}", row["ground_truth"]) for g in guesses)
    assert sum(scores) / len(scores) <= 0.02


def test_multi_hop_fields_are_read(tmp_path):
    hotpot = {"_id": "h1", "question": "Which city hosts the river's mouth?", "answer": "Le Havre",
              "context": [["Seine", ["The Seine ends at Le Havre."]], ["Loire", ["The Loire is long."]]],
              "supporting_facts": [["Seine", 0]]}
    musique = {"id": "m1", "question": "Who founded it?", "answer": "Ann Lee", "answer_aliases": ["A. Lee"],
               "paragraphs": [{"title": "Shakers", "paragraph_text": "Ann Lee founded them.", "is_supporting": True},
                              {"title": "Other", "paragraph_text": "Unrelated.", "is_supporting": False}]}
    path = tmp_path / "mh.jsonl"
    path.write_text(json.dumps(hotpot) + "\n" + json.dumps(musique) + "\n")
    first, second = load_qa(str(path))
    assert first.id == "h1" and [p["supporting"] for p in first.meta["passages"]] == [True, False]
    assert first.meta["passages"][0]["text"] == "Seine\nThe Seine ends at Le Havre."
    assert second.meta["answers"] == ["Ann Lee", "A. Lee"] and second.meta["passages"][1]["supporting"] is False
    assert item_passages({"paragraphs": ["a", "b"]}) == [{"text": "a", "supporting": True},
                                                         {"text": "b", "supporting": True}]


def multihop_file(path, items=40):
    """A HotpotQA-shaped file: each question has 2 supporting and 3 distractor paragraphs of its own."""
    def paragraph(title, subject):
        return [title, [f"{title} is a subject of record number {subject}. ", f"It was described in {subject} notes. ",
                        "Its archive lists several unrelated facts about trade, weather and roads. ",
                        f"Scholars of {title} wrote about it at length in later years."]]

    lines = []
    for i in range(items):
        company, founder, town = f"Corvane{i} Works", f"Ilse Marrow{i}", f"Tollhaven{i}"
        context = [[company, [f"{company} was founded by {founder}. ", "It made brass instruments for a century."]],
                   [founder, [f"{founder} was born in {town}. ", "She later moved to the coast."]],
                   *(paragraph(f"Topic{i}x{k}", i * 10 + k) for k in range(3))]
        lines.append({"_id": f"mh{i}", "question": f"In which town was the founder of Corvane{i} Works born?",
                      "answer": town, "answer_aliases": [f"{town} village"], "context": context,
                      "supporting_facts": [[company, 0], [founder, 0]]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return lines


def test_multi_hop_rows_lay_out_numbered_passages_among_other_items_paragraphs(tmp_path, smol_tokenizer):
    from lcsynth.methods.keychain_qa import paragraph_text
    from lcsynth.text.chat import template_from_metadata
    from lcsynth.text.context_gain import encode_prompt

    lines = multihop_file(tmp_path / "mh.jsonl")
    method = {"name": "keychain", "qa": str(tmp_path / "mh.jsonl"), "layout": "passages", "max_items": 4,
              "lengths": {"targets": ["4k"]}}
    summary, rows = construct(tmp_path, method)
    assert len(rows["grpo"]) == 4 and summary.rejects == {}
    assert not (tmp_path / "out" / "stores").exists()  # no corpus store: distractors come from the QA file
    template = template_from_metadata(smol_tokenizer.metadata)
    by_id = {line["_id"]: line for line in lines}
    for row in rows["grpo"]:
        meta, user = row["meta"], row["prompt"][-1]["content"]
        line = by_id[meta["qa_id"]]
        ids = encode_prompt(smol_tokenizer, template.render(row["prompt"], add_generation_prompt=True))
        assert meta["n_tokens"] == len(ids) and abs(len(ids) - 4096) <= meta["tolerance"]
        numbers = [int(n) for n in re.findall(r"^Passage (\d+):$", user, re.M)]
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 5
        own = [paragraph_text(p) for p in line["context"]]
        for text in own[:2]:  # supporting paragraphs: verbatim, no pair inside
            assert re.search(rf"^Passage \d+:\n{re.escape(text)}$", user, re.M)
        assert all(text.split("\n")[0] in user for text in own)  # every own paragraph is there
        assert len(meta["evidence"]) == 5 and sum(e["supporting"] for e in meta["evidence"]) == 2
        others = re.findall(r"Corvane(\d+) Works was founded", user)
        assert len(set(others)) > 1 and len(others) == len(set(others))  # other items' paragraphs, once each
        assert resolve(user, meta["chain"]["head"], 10, HEX8)[1] == line["question"]
        assert row["ground_truth"] == [line["answer"], f"{line['answer']} village"]
    with pytest.raises(Exception, match="layout: passages lays out the paragraphs of a QA file"):
        construct(tmp_path, {**method, "qa": "demo"}, name="bad")
