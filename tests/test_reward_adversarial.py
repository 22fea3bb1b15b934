r"""Adversarial completions against every shipped reward, for every row kind the GRPO producers write.

Each table row is (case, completion, expected score of `keychain_reward`, of its strict mode, of `f1`).
verl's `compute_score` and TRL's `grpo_reward` must agree with `keychain_reward` on every row. The
gameable answers (one letter, a word of the question, the question itself, a piece of the gold, every
candidate at once, several boxes, think-tag tricks) must earn nothing or, for a listing of k
candidates, about 1/k: never more than guessing one of them.
"""

import pytest

from lcsynth.rewards import compute_score, f1, grpo_f1_reward, grpo_reward, keychain_reward, sub_em

HUGE = 100_000


def generic(gold: str, question: str, wrong: str, question_f1: float = 0) -> list[tuple[str, str, float, float, float]]:
    """Cases whose scores do not depend on the row kind (the gold is never inside the question)."""
    box = f"\\boxed{{{gold}}}"
    return [
        ("gold", f"So the answer is {box}.", 1, 1, 1),
        ("gold, LaTeX text wrapper", f"\\boxed{{\\text{{{gold}}}}}", 1, 1, 1),
        ("wrong", f"\\boxed{{{wrong}}}", 0, 0, 0),
        ("empty box", "\\boxed{}", 0, 0, 0),
        ("punctuation only", "\\boxed{ . , ! }", 0, 0, 0),
        ("one letter e", "\\boxed{e}", 0, 0, 0),
        ("one letter n", "\\boxed{n}", 0, 0, 0),
        ("the word node", "\\boxed{node}", 0, 0, 0),
        ("the question itself", f"\\boxed{{{question}}}", 0, 0, question_f1),
        ("wrong then gold: last box counts", f"\\boxed{{{wrong}}} no, {box}", 1, 0, 1),
        ("gold then wrong: last box counts", f"{box} no, \\boxed{{{wrong}}}", 0, 0, 0),
        ("no box", f"The answer is {gold}.", 0, 0, 0),
        ("gold only inside think", f"<think>{box}</think> \\boxed{{{wrong}}}", 0, 0, 0),
        ("gold only inside think, no answer", f"<think>{box}</think> I am not sure.", 0, 0, 0),
        ("think never closed", f"<think>it must be {box}", 0, 0, 0),
        ("box before the only </think>", f"{box}</think>", 0, 0, 0),
        ("think reopened after the answer", f"<think>a</think>{box}<think>more", 0, 0, 0),
        ("</think> inside the box", f"\\boxed{{{gold}</think>}}", 0, 0, 0),
        ("gold after think", f"<think>maybe \\boxed{{{wrong}}}</think> {box}", 1, 1, 1),
        ("unclosed box", f"\\boxed{{{gold}", 0, 0, 0),
        ("extra closing braces", f"{box}}}}}", 1, 1, 1),
        ("extra opening brace never closed", f"\\boxed{{{{{gold}}}", 0, 0, 0),
        ("huge text before the box", "x " * HUGE + box, 1, 1, 1),
        ("huge run of unclosed boxes", "\\boxed{" * HUGE + gold, 0, 0, 0),
        ("huge nested boxes: the innermost is last", "\\boxed{" * HUGE + gold + "}" * HUGE, 1, 0, 1),
        ("gold padded with a huge answer", f"\\boxed{{{gold} " + "word " * HUGE + "}", 0, 0, 0),
    ]


KEYCHAIN_DEMO = {  # what `qa: demo` writes: a function's signature
    "gold": ["isleap(year)"],
    "question": "What is the full signature of the function `isleap` of the `calendar` module?",
    "wrong": "leapdays(y1, y2)",
    "cases": [
        ("decorated inside the box", r"\boxed{The answer is isleap(year).}", 1, 1, 0.5),
        ("typewriter text", r"\boxed{\texttt{isleap(year)}}", 1, 1, 1),
        ("qualified name", r"\boxed{calendar.isleap(year)}", 2 / 3, 2 / 3, 0),
        ("name from the question", r"\boxed{isleap}", 0, 0, 0),
        ("name with empty call", r"\boxed{isleap()}", 0, 0, 0),
        ("module from the question", r"\boxed{calendar}", 0, 0, 0),
        ("word from the question", r"\boxed{signature}", 0, 0, 0),
        ("every parameter name guessed", r"\boxed{isleap(year), isleap(y), isleap(x), isleap(self), isleap(n)}",
         2 / 7, 2 / 7, 1 / 3),  # one-letter words are free: 2 gold words of 7 counted
    ],
}

KEYCHAIN_MULTIHOP = {  # a QA file row: answer plus alias
    "gold": ["Marie Curie", "Maria Skłodowska-Curie"],
    "question": "Who discovered the element named after the homeland of the Warsaw-born physicist?",
    "wrong": "Ernest Rutherford",
    "cases": [
        ("alias", r"\boxed{Maria Skłodowska-Curie}", 1, 1, 1),
        ("case and punctuation", r"\boxed{MARIE-CURIE!}", 1, 1, 0),
        ("inside a phrase", r"\boxed{it was Marie Curie}", 1, 1, 2 / 3),
        ("decorated with a title", r"\boxed{physicist Marie Curie}", 2 / 3, 2 / 3, 0.8),
        ("last name only (inside the gold)", r"\boxed{Curie}", 0, 0, 2 / 3),
        ("first name only (inside the gold)", r"\boxed{Marie}", 0, 0, 2 / 3),
        ("word from the question", r"\boxed{physicist}", 0, 0, 0),
        ("every candidate listed", r"\boxed{Pierre Curie, Marie Curie, Irene Curie, Ernest Rutherford, Niels Bohr}",
         0.2, 0.2, 1 / 3),
    ],
}

VERIFIABLE = {  # a span of the document, the question written not to contain it
    "gold": ["444 units per day"],
    "question": "What is the daily limit for region 12?",
    "wrong": "1,200 kg",
    "cases": [
        ("inside a phrase", r"\boxed{the limit is 444 units per day}", 4 / 5, 4 / 5, 0.8),
        ("number only (inside the gold)", r"\boxed{444}", 0, 0, 0.4),
        ("number from the question", r"\boxed{12}", 0, 0, 0),
        ("phrase from the question", r"\boxed{daily limit}", 0, 0, 0),
        ("every limit listed", r"\boxed{37 units per day, 74 units per day, 444 units per day, 481 units per day}",
         0.25, 0.25, 0.4),
    ],
}

TRACING_ORDER = {  # untie_knots restore_order: the first id is in the question
    "gold": ["aB3xZ9 Qw8e7R k2LmN0"],
    "question": "One document was cut into 3 chunks; its first chunk is marked <D> aB3xZ9 </D>. List them.",
    "wrong": "Zz81pQ hh7Tq2 Pl0oKi",
    "question_f1": 0.1,
    "cases": [
        ("ids in the wrong order: F1 cannot tell", r"\boxed{aB3xZ9 k2LmN0 Qw8e7R}", 0, 0, 1),
        ("commas between ids", r"\boxed{aB3xZ9, Qw8e7R, k2LmN0}", 1, 1, 1),
        ("id from the question (inside the gold)", r"\boxed{aB3xZ9}", 0, 0, 0.5),
        ("the first two ids", r"\boxed{aB3xZ9 Qw8e7R}", 0, 0, 0.8),
    ],
}

TRACING_NEXT = {  # untie_knots next_chunk: one id, another id in the question
    "gold": ["Qw8e7R"],
    "question": "The chunk marked <D> aB3xZ9 </D> was cut from a longer document. Which chunk continues it?",
    "wrong": "k2LmN0",
    "cases": [
        ("with its markers", r"\boxed{<D> Qw8e7R </D>}", 1, 1, 1 / 2),
        ("id from the question", r"\boxed{aB3xZ9}", 0, 0, 0),
        ("every id in the text", r"\boxed{aB3xZ9 Qw8e7R k2LmN0 Zz81pQ hh7Tq2 Pl0oKi 9iUj7Y Mn3bV4}",
         1 / 8, 1 / 8, 2 / 9),
    ],
}

KINDS = {"keychain demo": KEYCHAIN_DEMO, "keychain multi-hop": KEYCHAIN_MULTIHOP, "verifiable": VERIFIABLE,
         "tracing restore_order": TRACING_ORDER, "tracing next_chunk": TRACING_NEXT}
TABLE = [pytest.param(kind, *case, id=f"{kind}: {case[0]}")
         for kind, spec in KINDS.items()
         for case in [*generic(spec["gold"][0], spec["question"], spec["wrong"], spec.get("question_f1", 0)),
                      *spec["cases"]]]


@pytest.mark.parametrize(("kind", "case", "completion", "reward", "strict", "f1_score"), TABLE)
def test_every_reward_pays_what_the_table_says(kind, case, completion, reward, strict, f1_score):
    spec = KINDS[kind]
    gold, question = spec["gold"], spec["question"]
    assert keychain_reward(completion, gold, question=question) == pytest.approx(reward)
    assert keychain_reward(completion, gold, strict=True, question=question) == pytest.approx(strict)
    assert grpo_f1_reward([completion], [gold]) == pytest.approx([f1_score], abs=1e-3)
    # the trainer adapters score exactly as the reward does
    extra = {"index": 0, "question": question, "split": "train"}
    assert compute_score("lcsynth/keychain", completion, gold, extra) == pytest.approx(reward)
    assert grpo_reward([completion], [gold], question=[question]) == pytest.approx([reward])
    assert grpo_reward([[{"role": "assistant", "content": completion}]], [gold]) == pytest.approx([reward])


def test_the_reported_exploit_scores_nothing():
    """One letter, `node` or a word of the question scored 1.0 on every KeyChain row when a prediction
    inside the gold counted."""
    gold = ["isleap(year)"]
    question = KEYCHAIN_DEMO["question"]
    guesses = ["e", "n", "node", *question.replace("`", "").rstrip("?").split()]
    for guess in guesses:
        assert keychain_reward(f"\\boxed{{{guess}}}", gold) == 0.0, guess
        assert sub_em(guess, gold) == 0.0, guess


def test_listing_candidates_never_beats_guessing_one():
    """Expected pay of boxing k of n equally likely candidates (one of them gold) is at most 1/n for every k."""
    candidates = [f"Name{i} Person" for i in range(12)]
    for k in range(1, len(candidates) + 1):
        listed = ", ".join(candidates[:k])
        expected = sum(keychain_reward(f"\\boxed{{{listed}}}", [gold]) for gold in candidates) / len(candidates)
        assert expected <= 1 / len(candidates) + 1e-9, k


def test_a_restated_question_is_refused_even_when_it_holds_the_gold():
    question = "Which came first, Arthur's Magazine or First for Women?"
    gold = ["Arthur's Magazine"]
    assert keychain_reward(r"\boxed{Arthur's Magazine}", gold, question=question) == 1.0
    assert keychain_reward(f"\\boxed{{{question}}}", gold, question=question) == 0.0
    assert keychain_reward(r"\boxed{Arthur's Magazine or First for Women}", gold, question=question) == 0.0
    assert keychain_reward(r"\boxed{Arthur's Magazine or First for Women}", gold) == pytest.approx(3 / 7)


def test_f1_is_separate_and_softer_than_the_reward():
    assert f1("Curie", "Marie Curie") == pytest.approx(2 / 3)
    assert keychain_reward(r"\boxed{Curie}", "Marie Curie") == 0.0
    assert f1("e", "e") == 0.0  # one character never scores, under any reward
