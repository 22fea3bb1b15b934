"""Reward functions for verifiable GRPO rows: boxed-answer extraction, sub-EM, F1, strict format, adapters."""

import numpy as np
import pytest

from lcsynth.rewards import (
    compute_score,
    exact_match,
    extract_answer,
    f1,
    format_ok,
    grpo_f1_reward,
    grpo_reward,
    keychain_reward,
    normalize_answer,
    sub_em,
)

# --- normalisation and extraction -------------------------------------------------------------------------


def test_normalize_answer():
    assert normalize_answer("  The   Blue, Falcon!! ") == "blue falcon"
    assert normalize_answer("A cat and an owl") == "cat and owl"
    # articles only as whole words: "theory" and "anagram" keep their letters
    assert normalize_answer("Theory of an anagram") == "theory of anagram"
    assert normalize_answer("\t\n") == ""


def test_nested_braces_extracted():
    assert extract_answer(r"Hence \boxed{\frac{1}{2}} is the answer.") == r"\frac{1}{2}"
    assert extract_answer(r"\boxed{{a}{b{c}}}") == "{a}{b{c}}"


def test_escaped_braces_are_literal():
    assert extract_answer(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"


def test_last_box_wins():
    assert extract_answer(r"First \boxed{Paris}, no wait, \boxed{Lyon}.") == "Lyon"
    assert keychain_reward(r"First \boxed{Paris}, no wait, \boxed{Lyon}.", "Paris") == 0.0
    assert keychain_reward(r"First \boxed{Lyon}, no wait, \boxed{Paris}.", "Paris") == 1.0


def test_unclosed_trailing_box_is_ignored():
    assert extract_answer(r"\boxed{Paris} then \boxed{Ly") == "Paris"
    assert extract_answer(r"only \boxed{truncated") is None


def test_no_box():
    assert extract_answer("The answer is Paris.") is None
    assert keychain_reward("The answer is Paris.", "Paris") == 0.0


def test_think_block_box_does_not_count():
    thinking_only = r"<think>It is \boxed{Paris}.</think> The answer is Paris."
    assert extract_answer(thinking_only) is None
    assert keychain_reward(thinking_only, "Paris") == 0.0
    answered = r"<think>Maybe \boxed{Lyon}?</think> Final: \boxed{Paris}"
    assert extract_answer(answered) == "Paris"
    assert keychain_reward(answered, "Paris") == 1.0
    # only the text after the LAST </think> is searched
    twice = r"<think>\boxed{Lyon}</think> \boxed{Rome} <think>again</think> \boxed{Paris}"
    assert extract_answer(twice) == "Paris"


# --- sub-EM scoring ---------------------------------------------------------------------------------------


def test_boxed_gold_scores_one():
    assert keychain_reward(r"The key is \boxed{Blue Falcon}.", "Blue Falcon") == 1.0
    # normalisation: case, punctuation and articles do not matter
    assert keychain_reward(r"\boxed{THE Blue, Falcon!}", "blue falcon") == 1.0


def test_gold_inside_longer_boxed_phrase():
    assert keychain_reward(r"\boxed{the key is Blue Falcon}", "Blue Falcon") == 1.0  # fillers are free
    # words beyond the gold dilute the pay: 2 gold words of 4 counted ("key", "is" are fillers)
    assert keychain_reward(r"\boxed{the key is Blue Falcon, in the drawer}", "Blue Falcon") == 0.5
    assert sub_em("the key is Blue Falcon, in the drawer", "Blue Falcon") == 1.0


def test_prediction_substring_of_gold_never_pays():
    assert keychain_reward(r"\boxed{Falcon}", "Blue Falcon") == 0.0
    assert sub_em("Curie", "Marie Curie") == 0.0
    assert sub_em("Curie", "Marie-Curie") == 0.0
    assert sub_em("Marie-Curie", "Curie") == 1.0  # on word boundaries, punctuation as a space
    assert sub_em("Mariecurie", "Curie") == 0.0  # not inside a word


def test_wrong_answer_scores_zero():
    assert keychain_reward(r"\boxed{Red Eagle}", "Blue Falcon") == 0.0
    assert sub_em("Lyon", "Paris") == 0.0


def test_empty_box_scores_zero():
    assert extract_answer(r"\boxed{}") == ""
    assert keychain_reward(r"\boxed{}", "Blue Falcon") == 0.0
    # also a box holding only punctuation / articles normalises to empty
    assert keychain_reward(r"\boxed{ the . }", "Blue Falcon") == 0.0
    assert sub_em("", "anything") == 0.0
    assert sub_em("anything", "") == 0.0
    assert sub_em("anything", ["", "The"]) == 0.0


def test_list_of_golds_aliases():
    golds = ["Blue Falcon", "the falcon key", "BF-7"]
    assert keychain_reward(r"\boxed{bf7}", golds) == 1.0
    assert keychain_reward(r"\boxed{Falcon Key}", golds) == 1.0
    assert keychain_reward(r"\boxed{Red Eagle}", golds) == 0.0
    assert keychain_reward(r"\boxed{Blue Falcon}", ("Blue Falcon",)) == 1.0


def test_exact_match():
    assert exact_match("The Blue Falcon.", "blue falcon") == 1.0
    assert exact_match("Blue Falcon key", "blue falcon") == 0.0
    assert exact_match("falcon", ["eagle", "Falcon"]) == 1.0
    assert exact_match("", "") == 0.0


# --- F1 ---------------------------------------------------------------------------------------------------


def test_f1_hand_computed():
    # pred "the quick brown fox" -> [quick, brown, fox]; gold [quick, red, fox]; common = 2
    # P = 2/3, R = 2/3 -> F1 = 2/3
    assert f1("the quick brown fox", "quick red fox") == pytest.approx(2 / 3)
    # pred [new, york, city]; gold [new, york]; common = 2; P = 2/3, R = 1 -> F1 = 2*(2/3)/(5/3) = 0.8
    assert f1("New York City", "new york") == pytest.approx(0.8)
    # repeated tokens count with multiplicity: pred {x: 2, y: 1}, gold {x: 1, y: 1}; common = 2
    # P = 2/3, R = 1 -> F1 = 0.8
    assert f1("x x y", "x y") == pytest.approx(0.8)
    # max over golds: vs "lyon" 0; vs "paris": common 1, P = 1/2, R = 1 -> F1 = 2/3
    assert f1("Paris France", ["Lyon", "Paris"]) == pytest.approx(2 / 3)
    assert f1("Blue Falcon", "blue falcon") == 1.0
    assert f1("red eagle", "blue falcon") == 0.0
    assert f1("", "blue falcon") == 0.0
    assert f1("the", "blue falcon") == 0.0


# --- strict format ----------------------------------------------------------------------------------------


def test_strict_accepts_clean_answer():
    completion = r"<think>Could be \boxed{Lyon}.</think> The key is \boxed{Blue Falcon}."
    assert format_ok(completion, "Blue Falcon")
    assert keychain_reward(completion, "Blue Falcon", strict=True) == 1.0


def test_strict_rejects_two_boxes():
    completion = r"\boxed{Red Eagle} or maybe \boxed{Blue Falcon}"
    assert keychain_reward(completion, "Blue Falcon") == 1.0
    assert not format_ok(completion, "Blue Falcon")
    assert keychain_reward(completion, "Blue Falcon", strict=True) == 0.0


def test_strict_rejects_very_long_boxed_answer():
    gold = "falcon"  # 6 characters: a boxed answer may be up to 6 + 128 = 134 characters
    at_limit = r"\boxed{falcon " + "x" * 127 + "}"  # 6 + 1 + 127 = 134 characters
    too_long = r"\boxed{falcon " + "x" * 128 + "}"  # 135 characters
    assert format_ok(at_limit, gold) and keychain_reward(at_limit, gold, strict=True) == 0.5
    assert keychain_reward(too_long, gold) == 0.5  # one gold word of two
    assert not format_ok(too_long, gold)
    assert keychain_reward(too_long, gold, strict=True) == 0.0
    # the limit is measured against the longest gold
    assert keychain_reward(too_long, [gold, "y" * 20], strict=True) == 0.5


def test_strict_rejects_long_trailing_text():
    gold = "Blue Falcon"
    trailing = r"\boxed{Blue Falcon} " + "and then some more words after the box, " * 3
    assert keychain_reward(trailing, gold) == 1.0
    assert not format_ok(trailing, gold)
    assert keychain_reward(trailing, gold, strict=True) == 0.0
    # whitespace does not count: 32 non-whitespace characters pass, 33 fail
    assert keychain_reward(r"\boxed{Blue Falcon}" + " a" * 32, gold, strict=True) == 1.0
    assert keychain_reward(r"\boxed{Blue Falcon}" + " a" * 33, gold, strict=True) == 0.0


def test_strict_without_box_is_zero():
    assert not format_ok("Blue Falcon", "Blue Falcon")
    assert keychain_reward("Blue Falcon", "Blue Falcon", strict=True) == 0.0


# --- adapters ---------------------------------------------------------------------------------------------


def test_trl_adapter_string_completions():
    completions = [r"\boxed{Blue Falcon}", "no box at all", r"\boxed{}", r"\boxed{Falcon}", r"\boxed{red eagle}"]
    golds = ["Blue Falcon", "Blue Falcon", "Blue Falcon", ["Red Eagle", "Blue Falcon"], ["Red Eagle", "Blue Falcon"]]
    scores = grpo_reward(completions, golds, prompts=["p"] * 5, meta=[{}] * 5)
    assert scores == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert all(isinstance(s, float) for s in scores)


def test_trl_adapter_conversational_completions():
    completions = [
        [{"role": "assistant", "content": r"It is \boxed{Blue Falcon}."}],
        [{"role": "assistant", "content": r"It is \boxed{Red Eagle}."}],
        [{"role": "assistant", "content": "No box."}],
        [{"role": "assistant", "content": [{"type": "text", "text": r"\boxed{Blue Falcon}"}]}],
    ]
    golds = ["Blue Falcon"] * 4
    scores = grpo_reward(completions=completions, ground_truth=golds, completion_ids=[[1]] * 4)
    assert scores == [1.0, 0.0, 0.0, 1.0]
    assert all(isinstance(s, float) for s in scores)


def test_trl_adapter_length_mismatch_raises():
    with pytest.raises(ValueError):
        grpo_reward([r"\boxed{a}", r"\boxed{b}"], ["a"])


def test_trl_f1_adapter():
    completions = [
        r"\boxed{New York City}",
        [{"role": "assistant", "content": r"\boxed{new york}"}],
        "New York, no box",
        r"\boxed{}",
    ]
    scores = grpo_f1_reward(completions, ["new york"] * 4)
    assert scores == pytest.approx([0.8, 1.0, 0.0, 0.0])
    assert len(scores) == len(completions)


def test_verl_compute_score_list_ground_truth():
    solution = r"<think>hmm</think> The key is \boxed{BF-7}."
    assert compute_score("keychain", solution, ["Blue Falcon", "BF-7"]) == 1.0
    assert compute_score("keychain", solution, ["Red Eagle"], extra_info={"index": 3}) == 0.0
    assert compute_score("keychain", solution, "bf7") == 1.0


def test_verl_compute_score_numpy_ground_truth():
    solution = r"The key is \boxed{Blue Falcon}."
    assert compute_score("keychain", solution, np.array(["Red Eagle", "Blue Falcon"])) == 1.0
    assert compute_score("keychain", solution, np.array(["Red Eagle"], dtype=object)) == 0.0
    score = compute_score("keychain", "no box", np.array(["Blue Falcon"]))
    assert score == 0.0 and isinstance(score, float)
