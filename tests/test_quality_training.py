"""The training experiment's data and training pieces (bench/quality) on CPU: lcsynth rows become SFT pairs and
text rows, every arm gets its files and a same-compute control, and the training and scoring scripts run on a
tiny random model (nothing downloaded). The GPU run itself is `python -m bench quality` on the GPU machine."""

import json
import re
import shutil

import pytest
from test_construct import construct
from test_longpo import answers
from test_longpo import run as longpo_run
from tiny_lm import tiny_llama, train_tokenizer

from bench.quality.arms import plan
from bench.quality.evaluate import evaluate
from bench.quality.mixes import corpus_chunks, sft_pair
from bench.quality.train import train
from lcsynth.corpus.demo import iter_demo_documents

pytestmark = pytest.mark.trainer


@pytest.fixture(scope="module")
def keychain_rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kc")
    _, rows = construct(tmp, {"name": "keychain", "qa": "demo", "max_items": 6, "lengths": {"targets": ["2k"]},
                              "form": "sft"})
    return rows["sft"]


def test_keychain_rows_become_pairs_whose_completion_walks_the_chain_then_boxes_the_gold(keychain_rows):
    for row in keychain_rows:
        pair = sft_pair(row, "sft")
        assert pair["method"] == "keychain" and pair["prompt"] == row["messages"][:-1]
        content = pair["completion"][0]["content"]
        chain = row["meta"]["chain"]
        assert chain["head"] in content and content.rstrip(".").endswith("}")
        assert "\\boxed{" in content and content.index(chain["head"]) < content.index("\\boxed{")


def test_naive_chunks_have_the_lengths_asked(smol_tokenizer):
    import random

    texts = [d.text for d in iter_demo_documents()][:20]

    def count(ts):
        return [len(smol_tokenizer.encode(t)) for t in ts]

    ratio = sum(count(texts)) / sum(len(t) for t in texts)
    lengths = [300, 1200, 2500, 800]
    chunks = corpus_chunks(texts, lengths, count, random.Random(0), ratio)
    for want, got in zip(lengths, count([c["text"] for c in chunks]), strict=False):
        assert 0.85 * want <= got <= want


@pytest.fixture
def work(tmp_path, scripted, keychain_rows):
    """A work folder as the data stage leaves it: model, corpus, a written and a built run."""
    work = tmp_path / "work"
    docs = [d.text for d in iter_demo_documents()][:30]
    (work / "corpus").mkdir(parents=True)
    (work / "corpus" / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    tokenizer = train_tokenizer(docs[:10], work / "models" / "untuned", vocab_size=600)
    tiny_llama(tokenizer, 4096).save_pretrained(work / "models" / "untuned")
    summary, _ = longpo_run(tmp_path, scripted, answers("The span says dumps writes JSON text.",
                                                        "The whole page lists many functions and classes."))
    shutil.copytree(summary.run_dir, work / "runs" / "written")
    built = work / "runs" / "built"
    built.mkdir(parents=True)
    _, rows = construct(tmp_path, {"name": "untie_knots", "lengths": {"targets": ["2k"]}}, name="utk",
                        limits={"max_documents": 4})
    with (built / "sft-00000.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keychain_rows)
    with (built / "pretrain-00000.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows["pretrain"])
    return work, tokenizer


def test_every_arm_gets_data_and_the_same_steps_as_its_control(work):
    work, tokenizer = work

    def count(ts):
        return [len(ids) for ids in tokenizer(list(ts), add_special_tokens=False)["input_ids"]]

    summary = plan(work, count, sft_steps=2, cpt_steps=1, batch=2)
    assert summary["lcsynth_sft_by_method"] and summary["rows"]["lcsynth_sft"] == 4
    arms = {p.stem: json.loads(p.read_text()) for p in (work / "arms").glob("*.json")}
    assert {"naive_sft", "lcsynth_sft", "naive_ext", "lcsynth_ext", "gain_off"} <= set(arms)
    steps = {n: [s["steps"] for s in a["stages"]] for n, a in arms.items()}
    assert steps["naive_sft"] == steps["lcsynth_sft"] == [2] and steps["naive_ext"] == steps["lcsynth_ext"] == [1, 2]
    assert arms["lcsynth_ext"]["rope_theta"] > 100000 and arms["lcsynth_sft"]["rope_theta"] is None
    sft = [json.loads(line) for line in (work / "mixes" / "lcsynth_sft.jsonl").read_text().splitlines()]
    assert all(r["completion"][0]["role"] == "assistant" and r["prompt"] for r in sft)
    naive = [json.loads(line) for line in (work / "mixes" / "naive_sft.jsonl").read_text().splitlines()]
    assert len(naive) == len(sft) and all(set(r) == {"text"} for r in naive)


def test_an_extended_arm_trains_both_stages_and_scores(work):
    work, tokenizer = work

    def count(ts):
        return [len(ids) for ids in tokenizer(list(ts), add_special_tokens=False)["input_ids"]]

    plan(work, count, sft_steps=1, cpt_steps=1, batch=1)
    spec = json.loads((work / "arms" / "lcsynth_ext.json").read_text())
    for stage in spec["stages"]:
        stage["max_length"] = 4096
    record = train(spec, device="cpu")
    out = work / "models" / "lcsynth_ext"
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == spec["max_positions"]
    assert re.search(r'"rope_theta": 1000000', json.dumps(config))
    assert [s["steps"] for s in record["stages"]] == [1, 1] and all(s["train_loss"] > 0 for s in record["stages"])
    probes = work / "probes.jsonl"
    probes.write_text("".join(json.dumps({"id": f"p{i}", "task": "needle_single", "length": 2000,
                                          "prompt": f"The code is {1000 + i}. What is the code?",
                                          "answers": [str(1000 + i)], "scorer": "one_of"}) + "\n" for i in range(3)))
    summary = evaluate(str(out), probes, work / "evals" / "lcsynth_ext.json", engine="hf")
    assert summary["items"] == 3 and 0 <= summary["by_length"]["2000"]["mean"] <= 100
    answers_file = (work / "evals" / "lcsynth_ext.answers.jsonl").read_text().splitlines()
    assert len(answers_file) == 3
