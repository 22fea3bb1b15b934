"""Long samples by construction (KeyChain, Untie-the-Knots, NExtLong), checked by code against their layout.

All runs use the `none` backend (no model: the bundled SmolLM2 vocabulary counts tokens) on the demo corpus.
"""

import asyncio
import json
import random
import re

import pytest
from conftest import text as completion

from lcsynth.config import validate_recipe
from lcsynth.corpus.demo import iter_demo_documents
from lcsynth.corpus.store import TokenStore, segment_counts, segment_text
from lcsynth.methods.keychain import KEY_PATTERNS, resolve
from lcsynth.rewards import keychain_reward
from lcsynth.run.local import run_recipe
from lcsynth.text.chat import template_from_metadata
from lcsynth.text.context_gain import encode_prompt
from lcsynth.text.lengths import DepthSpec, LengthSpec


def construct(tmp_path, method, name="run", **sections):
    data = {"corpus": {"type": "demo", "min_chars": 2000}, "backend": {"type": "none"}, "methods": [method],
            "output": {"root": str(tmp_path / "out"), "name": name}, **sections}
    summary = asyncio.run(run_recipe(validate_recipe(data, "test"), show_progress=False))
    rows = {}
    for path in sorted(summary.run_dir.glob("*-00000.jsonl")):
        rows[path.name.split("-")[0]] = [json.loads(line) for line in path.read_text().splitlines()]
    return summary, rows


@pytest.fixture(scope="module")
def demo_docs():
    return {d.id: d.text for d in iter_demo_documents()}


def test_length_and_depth_specs():
    spec = LengthSpec(targets=["32k", "128k"])
    assert spec.targets == {32768: 1.0, 131072: 1.0}
    assert spec.tolerance(131072) == 1311 and spec.tolerance(2000) == 64
    mix = LengthSpec(targets={"4k": 0.9, "8k": 0.1})
    picks = [mix.pick(random.Random(i)) for i in range(400)]
    assert 320 < picks.count(4096) < 400
    with pytest.raises(ValueError):
        LengthSpec(targets={"4k": 0})
    gauss = [DepthSpec(kind="gaussian", centre=0.5, sigma=0.1).pick(random.Random(i)) for i in range(200)]
    assert all(0 <= d <= 1 for d in gauss) and 0.45 < sum(gauss) / 200 < 0.55


def test_store_segments_rebuild_documents_and_counts_add_up(tmp_path, smol_tokenizer, demo_docs):
    texts = [demo_docs["pydoc:json"], demo_docs["pydoc:textwrap"]]
    for text in texts:
        segments = segment_text(text)
        assert "".join(segments) == text and all(s[:1].isspace() for s in segments[1:])
        assert sum(segment_counts(smol_tokenizer, segments)) == len(smol_tokenizer.encode(text))
    built = []

    def docs():
        built.append(1)
        return iter(d for d in iter_demo_documents(("json", "textwrap")))

    store = TokenStore.open_or_build(tmp_path / "s", docs, smol_tokenizer)
    again = TokenStore.open_or_build(tmp_path / "s", docs, smol_tokenizer)
    assert built == [1] and len(again) == 2 and store.additive
    assert "".join(again.doc(1).segments) == demo_docs["pydoc:textwrap"]
    assert again.doc_tokens == [len(smol_tokenizer.encode(t)) for t in texts]


KEYCHAIN = {"name": "keychain", "qa": "demo", "max_items": 4, "lengths": {"targets": ["4k", "8k"]},
            "depth": {"kind": "fixed", "depths": [0.0, 0.5, 1.0]}}


HEX8 = KEY_PATTERNS["hex8"]


def test_keychain_rows_resolve_uniquely_and_land_on_their_target(tmp_path, smol_tokenizer, demo_docs):
    summary, rows = construct(tmp_path, KEYCHAIN)
    template = template_from_metadata(smol_tokenizer.metadata)
    assert len(rows["grpo"]) == 4 and summary.rejects == {}
    for row in rows["grpo"]:
        meta, user = row["meta"], row["prompt"][-1]["content"]
        ids = encode_prompt(smol_tokenizer, template.render(row["prompt"], add_generation_prompt=True))
        assert meta["n_tokens"] == len(ids) and abs(len(ids) - meta["target_tokens"]) <= meta["tolerance"]
        assert meta["tolerance"] == max(-(-meta["target_tokens"] // 100), 64)
        chain = meta["chain"]
        # LoongRL's final data: 4 chains per 1,024 target tokens, 8-hex-digit keys
        assert chain["chains"] == 4 * meta["target_tokens"] // 1024 and len(chain["links"]) == 4 * chain["chains"]
        keys = re.findall(r'\{"([0-9a-f]{8})": ', user)
        assert len(keys) == len(set(keys)) == len(chain["links"]) and all(HEX8.match(k) for k in keys)
        visited, question = resolve(user, chain["head"], 10, HEX8)
        assert question == meta["question"] and meta["decoy_questions"] == chain["chains"] - 1  # all distinct
        assert len(visited) == 4 and question.startswith("What is the full signature of the function")
        assert row["ground_truth"][0].split("(")[0] in question
        heads = {link["key"] for link in chain["links"] if link["hop"] == 0} - {chain["head"]}
        assert all(resolve(user, head, 10, HEX8)[1] != question for head in heads)  # decoys never reach it
        source = meta["source_doc"]
        assert source not in {d["doc_id"] for d in meta["distractors"]}
        evidence = meta["evidence"][0]
        first_line = smol_tokenizer.decode(ids[evidence["token_offset"]:evidence["token_offset"] + 4])
        assert row["ground_truth"][0].startswith(first_line.strip())
        for link in chain["links"]:
            assert smol_tokenizer.decode(ids[link["token_offset"]:link["token_offset"] + 1]) == ' {"'
            start, end = link["char_span"]
            content = row["prompt"][link["message"]]["content"]
            assert content[start:end].startswith(f' {{"{link["key"]}": ') and content[start:end].endswith("}.")
        start, end = evidence["char_span"]
        assert row["prompt"][evidence["message"]]["content"][start:end].startswith(first_line.strip())
        assert meta["depth"] in (0.0, 0.5, 1.0) and abs(meta["evidence_depths"][0] - meta["depth"]) < 0.2
        assert keychain_reward(f"so \\boxed{{{row['ground_truth'][0]}}}", row["ground_truth"]) == 1.0
    _, again = construct(tmp_path, KEYCHAIN, name="again")
    assert again == rows  # same seed, same rows
    depths = (summary.run_dir / "grpo_depths.svg").read_text()
    assert "evidence depth (4 spans" in depths and depths in (summary.run_dir / "report.html").read_text()


def test_untie_knots_layout_is_invertible_and_tracing_answers_follow_from_it(tmp_path, smol_tokenizer, demo_docs):
    method = {"name": "untie_knots", "lengths": {"targets": ["4k"]}, "chunks": {2: 0.5, 3: 0.5}, "tracing_rows": 2}
    _, rows = construct(tmp_path, method, limits={"max_documents": 6})
    assert len(rows["pretrain"]) == 6 and len(rows["grpo"]) == 12
    assert construct(tmp_path, method, name="again", limits={"max_documents": 6})[1] == rows  # same seed
    for row in rows["pretrain"]:
        text, meta = row["text"], row["meta"]
        assert meta["n_tokens"] == len(smol_tokenizer.encode(text)) and abs(meta["n_tokens"] - 4096) <= 64
        chunks = meta["chunks"]
        assert (chunks[-1]["doc_id"], chunks[-1]["chunk"]) == (meta["documents"][-1], chunks[-1]["of"] - 1)
        assert len({(c["doc_id"], c["chunk"]) for c in chunks}) == len(chunks)  # each chunk once
        for doc_id in set(meta["documents"]):
            mine = [c for c in chunks if c["doc_id"] == doc_id]
            if mine[0]["id"] is None:
                continue
            block = re.search(r"<S> ([^<]+(?: <s> [^<]+)*) </S>", text[text.index(mine[-1]["id"]):]).group(1)
            order = block.split(" <s> ")
            assert sorted(order) == sorted(c["id"] for c in mine) and len(order) == mine[0]["of"]
            rebuilt = "".join(text[slice(*c["char_span"])] for c in sorted(mine, key=lambda c: order.index(c["id"])))
            assert rebuilt.strip() and rebuilt in demo_docs[doc_id]  # stripping markers gives the source back
        for start, end in meta["no_loss_spans"]:
            assert re.fullmatch(r"<D> [A-Za-z0-9]{6} </D>", text[start:end])
    by_seed = {r["meta"]["seed"]: r for r in rows["pretrain"]}
    for row in rows["grpo"]:
        source = by_seed[row["meta"]["seed"]]["text"]
        ids = row["meta"]["chunk_ids"]
        assert f"<S> {' <s> '.join(ids)} </S>" in source and "<S>" not in row["prompt"][0]["content"]
        if row["meta"]["task"] == "restore_order":
            assert row["ground_truth"] == [" ".join(ids)]
        else:
            asked = re.search(r"marked <D> (\w+) </D> was cut", row["prompt"][0]["content"]).group(1)
            assert row["ground_truth"] == [ids[ids.index(asked) + 1]]


def test_nextlong_negatives_come_out_and_leave_the_document(tmp_path, smol_tokenizer, demo_docs):
    method = {"name": "nextlong", "lengths": {"targets": ["32k"]}}
    _, rows = construct(tmp_path, method, limits={"max_documents": 5})
    assert rows["pretrain"]
    for row in rows["pretrain"]:
        text, meta = row["text"], row["meta"]
        assert meta["n_tokens"] == len(smol_tokenizer.encode(text)) and abs(meta["n_tokens"] - 32768) <= 328
        source = demo_docs[meta["source_doc_id"]]
        assert "\n".join(text[s:e] for s, e in meta["meta_chunk_spans"]) == source
        assert [s for s, _ in meta["meta_chunk_spans"]] == sorted(s for s, _ in meta["meta_chunk_spans"])
        laid = sorted([*meta["meta_chunk_spans"], *meta["negative_spans"]])  # p₁ N₁ p₂ N₂ …, joined by newlines
        assert len(meta["negative_spans"]) == len(meta["negatives"]) and laid[0][0] == 0 and laid[-1][1] == len(text)
        assert all(text[a[1]:b[0]] == "\n" for a, b in zip(laid, laid[1:], strict=False))
        ids = [n[0] for n in meta["negatives"]]
        assert len(ids) == len(set(ids)) and all(n[2] != meta["source_doc_id"] for n in meta["negatives"])
        at = 0
        for count in meta["negatives_per_chunk"]:  # each meta-chunk's negatives, best first
            scores = [n[1] for n in meta["negatives"][at:at + count]]
            assert scores == sorted(scores, reverse=True)
            at += count
    _, again = construct(tmp_path, method, name="again", limits={"max_documents": 5})
    assert again == rows


def passage_qa(request):
    """A fake model: asks for the first long word of the passage, with one decoy question."""
    passage = request.message_dicts()[-1]["content"]
    word = next(w for w in re.findall(r"[A-Za-z]{7,}", passage))
    return completion(json.dumps({"question": f"Which long word opens the passage about {word[:3]}?", "answer": word,
                            "decoys": ["Who wrote the passage?", "Which long word opens the passage about it?"]}))


def wrong_answer(request):
    qa = {"question": "What is it?", "answer": "zzzz not in text", "decoys": ["Why is that so?"]}
    return completion(json.dumps(qa))


def test_keychain_qa_written_by_a_model_is_checked_against_its_passage(tmp_path, scripted):
    method = {"name": "keychain", "qa": "llm", "lengths": {"targets": ["4k"]}}
    data = {"corpus": {"type": "demo", "min_chars": 2000}, "methods": [method],
            "output": {"root": str(tmp_path / "out"), "name": "llm"}, "limits": {"max_documents": 3}}
    backend = scripted(passage_qa)
    summary = asyncio.run(run_recipe(validate_recipe(data, "test"), backend, show_progress=False))
    rows = [json.loads(line) for line in (summary.run_dir / "grpo-00000.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len(backend.history) == 3
    for row in rows:
        user, meta = row["prompt"][-1]["content"], row["meta"]
        visited, question = resolve(user, meta["chain"]["head"], 10, HEX8)
        assert question.startswith("Which long word opens") and len(visited) == 4
        assert row["ground_truth"][0] in user and meta["qa_template"] == "keychain/qa@1"
        assert backend.history[0].json_schema["$id"] == "keychain_qa.json"
    data["output"]["name"], data["cache"] = "bad", {"enabled": False}
    bad = asyncio.run(run_recipe(validate_recipe(data, "test"), scripted(wrong_answer), show_progress=False))
    assert bad.rows == {} and bad.rejects == {"answer_not_in_evidence": 3}


def test_keychain_reads_qa_pairs_from_jsonl_and_names_a_bad_line(tmp_path):
    from lcsynth.corpus.demo_qa import demo_qa
    from lcsynth.errors import InputError

    items = list(demo_qa(iter_demo_documents(("json", "textwrap", "shlex"))))[:3]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": d.meta["question"], "answer": d.meta["answers"][0],
                                        "paragraphs": [d.text]}) + "\n" for i, d in enumerate(items)))
    method = {"name": "keychain", "qa": str(path), "lengths": {"targets": ["4k"]}, "key_format": "uuid4"}
    _, rows = construct(tmp_path, method)
    assert sorted(r["meta"]["qa_id"] for r in rows["grpo"]) == ["q0", "q1", "q2"]
    for row in rows["grpo"]:
        item = items[int(row["meta"]["qa_id"][1:])]
        user = row["prompt"][-1]["content"]
        assert row["meta"]["chain"]["chains"] == 4  # one chain per 1,024 tokens with uuid4 keys
        assert item.text.strip() in user and resolve(user, row["meta"]["chain"]["head"], 10)[1] == item.meta["question"]
    hotpot = {"question": "Which city?", "answer": "Paris", "context": [["Paris", ["Paris is a city.", " Big."]]]}
    other = {"question": "Which river?", "answer": "Seine", "context": [["Seine", ["The Seine is a river."]]]}
    path.write_text(json.dumps(hotpot) + "\n" + json.dumps(other) + "\n")
    _, hot = construct(tmp_path, {**method, "key_format": "hex8"}, name="hotpot")
    row = hot["grpo"][0]
    user = row["prompt"][-1]["content"]
    assert "Paris\nParis is a city. Big." in user and re.search(r'\{"[0-9a-f]{8}": "', user)
    assert resolve(user, row["meta"]["chain"]["head"], 10, KEY_PATTERNS["hex8"])[1] == "Which city?"
    path.write_text('{"question": "Why?"}\n')
    with pytest.raises(InputError, match=r"qa.jsonl:1: a QA line needs 'question' and 'answer'"):
        construct(tmp_path, method, name="bad")
