"""Could a policy score on the GRPO rows without reading the context? Context-free guessers on generated sets.

Each producer runs for real on the demo corpus (verifiable QA with a scripted question writer, the
tracing rows of Untie-the-Knots with no model; KeyChain is covered in test_keychain_loongrl). Two
guessers answer every row: the best single word, number or name of the question (an upper bound on
guessing from the question: the best of them is taken per row), and the most common gold of the set.
Each must average a reward of at most 0.05 under `keychain_reward`, the reward the rows ship with.
"""

import asyncio
import json
import re
from collections import Counter

from conftest import text as completion
from test_construct import construct

from lcsynth.config import validate_recipe
from lcsynth.rewards import keychain_reward
from lcsynth.run.local import run_recipe

THRESHOLD = 0.05


def question_guesses(question: str) -> list[str]:
    """Every word, number and identifier of the question, its quoted parts, and the question itself."""
    return [*re.findall(r"[\w.]+", question), *re.findall(r"`([^`]+)`|\"([^\"]+)\"", question), question]


def guesser_scores(rows: list[dict]) -> tuple[float, float]:
    """Mean reward of the best question-only guess per row, and of the most common gold."""
    golds = Counter(row["ground_truth"][0] for row in rows)
    common = golds.most_common(1)[0][0]
    best, frequent = [], []
    for row in rows:
        question, gold = row["meta"]["question"], row["ground_truth"]
        guesses = [g for item in question_guesses(question) for g in ([item] if isinstance(item, str) else item) if g]
        best.append(max(keychain_reward(f"\\boxed{{{g}}}", gold, question=question) for g in guesses))
        frequent.append(keychain_reward(f"\\boxed{{{common}}}", gold, question=question))
    return sum(best) / len(rows), sum(frequent) / len(rows)


def context_question(request):
    """A question writer that reads the passage: it asks what follows the words before the answer."""
    content = request.message_dicts()[-1]["content"]
    passage, answer = content.removeprefix("Passage:\n").rsplit("\n\nAnswer: ", 1)
    before = passage[:passage.index(answer)].split()[-4:]
    return completion(json.dumps({"question": f"In the document, what comes right after \"{' '.join(before)}\"?"}))


def test_verifiable_rows_cannot_be_answered_from_the_question_or_the_commonest_answer(tmp_path, scripted):
    method = {"name": "verifiable", "answers": "passage", "samples_per_document": 3, "span_tokens": 512}
    data = {"corpus": {"type": "demo", "min_chars": 4000}, "methods": [method],
            "context": {"max_document_tokens": 8000}, "output": {"root": str(tmp_path / "out"), "name": "v"},
            "limits": {"max_documents": 24}}
    summary = asyncio.run(run_recipe(validate_recipe(data, "test"), scripted(context_question), show_progress=False))
    rows = [json.loads(line) for line in (summary.run_dir / "grpo-00000.jsonl").read_text().splitlines()]
    assert len(rows) >= 30, summary.rejects
    from_question, most_common = guesser_scores(rows)
    print(f"verifiable: {len(rows)} rows, question guesser {from_question:.3f}, most common {most_common:.3f}")
    assert from_question <= THRESHOLD and most_common <= THRESHOLD
    by_document = Counter((r["meta"]["doc_id"], r["ground_truth"][0]) for r in rows)
    assert max(by_document.values()) == 1  # the samples of a document never share an answer


def test_tracing_rows_cannot_be_answered_from_the_question_or_the_commonest_answer(tmp_path):
    method = {"name": "untie_knots", "lengths": {"targets": ["2k"]}, "chunks": {2: 0.5, 3: 0.5}, "tracing_rows": 3}
    _, rows = construct(tmp_path, method, limits={"max_documents": 12})
    assert len(rows["grpo"]) >= 30
    from_question, most_common = guesser_scores(rows["grpo"])
    assert from_question <= THRESHOLD and most_common <= THRESHOLD
    by_text = Counter((r["meta"]["seed"], r["ground_truth"][0]) for r in rows["grpo"])
    assert max(by_text.values()) == 1  # the rows of one text ask distinct questions
