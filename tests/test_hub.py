"""`lcsynth push` against a loopback stand-in for the Hub (tests/fake_hub.py, a fake of the Hub's HTTP API; the
client is the real `huggingface_hub`): files, dataset card, idempotent re-push, dry run, token handling, errors.
"""

import asyncio
import json
import math
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fake_hub import FakeHub
from test_construct import construct
from test_pipeline import corpus, numbered_reply, recipe

from lcsynth.out.card import render_card
from lcsynth.redaction import redact, secret_values
from lcsynth.run.local import run_recipe

HF_SECRET = "hf_planted_SECRET_123"
OPENAI_SECRET = "sk-planted-OPENAI-0123456789abcdef"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub on 127.0.0.1 that wants the planted token; the environment points the Hub client at it."""
    server = FakeHub(HF_SECRET).start()
    for name, value in {"HF_ENDPOINT": server.url, "HF_TOKEN": HF_SECRET, "OPENAI_API_KEY": OPENAI_SECRET,
                        "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf_home")}.items():
        monkeypatch.setenv(name, value)
    for name in ("HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


def lcsynth(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lcsynth.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def knotted_run(tmp_path):
    """Pretraining and GRPO rows (Untie-the-Knots, no model), from a recipe that names a key variable."""
    method = {"name": "untie_knots", "lengths": {"targets": ["2k"]}, "tracing_rows": 1}
    summary, _ = construct(tmp_path, method, name="knots", limits={"max_records": 10},
                           backend={"type": "none", "api_key_env": "OPENAI_API_KEY"},
                           card={"license": "apache-2.0", "pretty_name": "Knotted long documents"})
    return summary.run_dir


def section(card, heading):
    """The rows of the first markdown table under `## heading`."""
    body = card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def parquet_rows(data):
    return pq.read_table(pa.BufferReader(data)).to_pylist()


def canonical(row):
    return json.dumps(row, sort_keys=True)


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


def test_push_uploads_parquet_and_a_card_once_and_a_second_push_changes_nothing(hub, tmp_path):
    run_dir = knotted_run(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    first = lcsynth("push", run_dir, "--repo", "alice/knots", "--split", "train=0.5,test=0.5")
    assert first.returncode == 0, first.stderr
    assert f"to {hub.url}/datasets/alice/knots in commit" in first.stdout
    assert f"Bearer {HF_SECRET}" in hub.auth_headers  # the token went where it belongs: the request headers
    commits = hub.repos["alice/knots"].branches["main"]
    assert len(commits) == 2 and commits[1].summary == "lcsynth run knots"
    files = commits[1].files
    assert {p for p in files if p.startswith("data/")} == {
        f"data/{kind}/{split}-00000-of-00001.parquet" for kind in ("grpo", "pretrain") for split in ("train", "test")}

    # The Parquet files hold the run's rows, all of them, with meta as a JSON string.
    counts, uploaded = {}, {}
    for path, data in files.items():
        if path.startswith("data/"):
            _, kind, name = path.split("/")
            rows = parquet_rows(data)
            counts.setdefault(kind, {})[name.split("-")[0]] = len(rows)
            uploaded.setdefault(kind, []).extend(canonical({**r, "meta": json.loads(r["meta"])}) for r in rows)
    for kind, by_split in counts.items():
        assert sum(by_split.values()) == manifest["counts"]["rows"][kind]
        shard = [json.loads(line) for line in (run_dir / f"{kind}-00000.jsonl").read_text().splitlines()]
        assert sorted(uploaded[kind]) == sorted(canonical(r) for r in shard)

    # The card: Hub metadata that huggingface_hub parses, and figures equal to the manifest's.
    from huggingface_hub import DatasetCard

    readme = files["README.md"].decode()
    card = DatasetCard(readme)
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["pretty_name"] == "Knotted long documents"
    assert meta["size_categories"] == ["n<1K"] and meta["language"] == ["en"]
    assert {"long-context", "synthetic", "lcsynth", "untie_knots"} <= set(meta["tags"])
    assert {c["config_name"]: {(f["split"], f["path"]) for f in c["data_files"]} for c in meta["configs"]} == {
        kind: {(split, f"data/{kind}/{split}-*.parquet") for split in counts[kind]} for kind in counts}
    assert {(k, s): int(n) for k, s, n in section(readme, "Rows")} == {
        (k, s): n for k, by_split in counts.items() for s, n in by_split.items()}
    stats = {row[0]: dict(zip(["rows", "min", "median", "p90", "max"], map(int, row[1:]), strict=True))
             for row in section(readme, "Token lengths")}
    assert stats == manifest["lengths"] and set(stats) == {"pretrain"}  # tracing rows record no count
    assert "Rows of grpo record no token count" in readme
    for kind in stats:
        recorded = [json.loads(line)["meta"]["n_tokens"] for line in (run_dir / f"{kind}-00000.jsonl").open()]
        assert stats[kind] == {"rows": len(recorded), "min": min(recorded), "median": nearest_rank(recorded, 0.5),
                               "p90": nearest_rank(recorded, 0.9), "max": max(recorded)}
        assert files[f"images/{kind}_lengths.svg"] == (run_dir / f"{kind}_lengths.svg").read_bytes()
        assert f"![tokens per row, {kind}](images/{kind}_lengths.svg)" in readme
    assert 'load_dataset("alice/knots", "grpo")' in readme
    assert f"sequence length of {stats['pretrain']['max']} or more" in readme
    recipe_shown = yaml.safe_load(readme.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert recipe_shown == manifest["recipe"]

    # Pushing the same run again sends no file and makes no commit.
    asked = len(hub.requests)
    second = lcsynth("push", run_dir, "--repo", "alice/knots", "--split", "train=0.5,test=0.5")
    assert second.returncode == 0 and "unchanged:" in second.stdout and commits[1].sha in second.stdout
    assert len(hub.repos["alice/knots"].branches["main"]) == 2
    again = hub.requests[asked:]
    assert not [r for r in again if r[0] == "PUT" or "/commit/" in r[1]]

    # A dry run writes exactly what was uploaded, and sends nothing.
    asked = len(hub.requests)
    dry = lcsynth("push", run_dir, "--repo", "alice/knots", "--split", "train=0.5,test=0.5",
                  "--dry-run", tmp_path / "staged")
    assert dry.returncode == 0 and "nothing was sent" in dry.stdout and len(hub.requests) == asked
    staged = {p.relative_to(tmp_path / "staged").as_posix(): p.read_bytes()
              for p in (tmp_path / "staged").rglob("*") if p.is_file()}
    assert staged == {p: d for p, d in files.items() if p != ".gitattributes"}

    # The planted secrets appear in no file of the run, the push or the server, and in no output.
    places = {str(p): p.read_bytes() for root in (tmp_path / "out", tmp_path / "staged", tmp_path / "hf_home")
              if root.exists() for p in root.rglob("*") if p.is_file()}
    places.update({f"server:{p}": d for p, d in hub.received + list(files.items())})
    places.update({f"server:{p} (rows)": json.dumps(parquet_rows(d)).encode() for p, d in files.items()
                   if p.endswith(".parquet")})
    places.update({"output": "".join(r.stdout + r.stderr for r in (first, second, dry)).encode()})
    assert len(places) > 20
    for secret in (HF_SECRET, OPENAI_SECRET):
        assert [where for where, data in places.items() if secret.encode() in data] == []


def test_push_to_a_new_private_repo_on_a_branch(hub, tmp_path):
    run_dir = knotted_run(tmp_path)
    done = lcsynth("push", run_dir, "--repo", "alice/branchy", "--revision", "dev", "--private")
    assert done.returncode == 0, done.stderr
    repo = hub.repos["alice/branchy"]
    assert repo.private and set(repo.branches) == {"main", "dev"}
    assert set(repo.branches["main"][-1].files) == {".gitattributes"}
    assert "README.md" in repo.branches["dev"][-1].files and repo.branches["dev"][-1].sha in done.stdout


def test_push_mistakes_are_one_line_and_lose_nothing(hub, tmp_path, scripted, monkeypatch):
    run_dir = knotted_run(tmp_path)

    def fails(result, text):
        assert result.returncode == 2 and text in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and HF_SECRET not in result.stderr

    fails(lcsynth("push", tmp_path / "nowhere", "--repo", "alice/x"), "no readable manifest.json")
    fails(lcsynth("push", run_dir, "--repo", "not a repo"), "--repo: 'not a repo' is not a Hub dataset id")
    fails(lcsynth("push", run_dir, "--repo", "alice/x", "--split", "train=0.5,my-test=0.5", "--dry-run",
                  tmp_path / "d"), "--split: split names")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    fails(lcsynth("push", run_dir, "--repo", "alice/x", "--dry-run", tmp_path / "busy"), "is not an empty folder")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    assert hub.requests == []  # none of these reached the Hub

    refused = lcsynth("push", run_dir, "--repo", "bob/x")  # the fake Hub lets this token create under alice only
    fails(refused, "pushing to bob/x failed:")
    assert "bob" not in hub.repos

    empty = asyncio.run(run_recipe(recipe(corpus(tmp_path, ["The doc says bad. " * 20]), output={"name": "empty"}),
                                   scripted(numbered_reply), show_progress=False)).run_dir
    fails(lcsynth("push", empty, "--repo", "alice/x", "--dry-run", tmp_path / "e"), "the run wrote no rows")
    assert not (tmp_path / "e").exists()

    leaky = asyncio.run(run_recipe(recipe(corpus(tmp_path, [f"The doc says {HF_SECRET}. " * 20]),
                                          output={"name": "leaky"}), scripted(numbered_reply), show_progress=False))
    assert leaky.rows["sft"] > 0
    fails(lcsynth("push", leaky.run_dir, "--repo", "alice/x", "--dry-run", tmp_path / "l"),
          "refusing to publish: sft-00000.jsonl: $HF_TOKEN")
    assert not (tmp_path / "l").exists()

    asked = len(hub.requests)
    no_token = {k: v for k, v in __import__("os").environ.items() if k != "HF_TOKEN"}
    fails(lcsynth("push", run_dir, "--repo", "alice/x", env=no_token), "no Hugging Face token")
    assert len(hub.requests) == asked and "alice/x" not in hub.repos


def test_card_redacts_credentials_from_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-planted-987654321")
    run_dir = knotted_run(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["recipe"]["backend"].update(base_url="https://user:pa55word@models.example/v1",
                                         options={"api_key": "plain-key-1234567", "n_threads": 2})
    manifest["recipe"]["corpus"]["hf_args"] = {"token": "hf_abcdefghijklmnopqrstu", "name": "books"}
    manifest["recipe"]["corpus"]["path"] = "data/tok-planted-987654321/books.jsonl"
    text = render_card(manifest, {"pretrain": {"train": 1}}, {}, {}, {}, "alice/x", "knots", "other", ["en"],
                       secrets=secret_values().values())
    for secret in ("pa55word", "plain-key-1234567", "hf_abcdefghijklmnopqrstu", "tok-planted-987654321"):
        assert secret not in text
    shown = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert shown["backend"]["base_url"] == "https://<redacted>@models.example/v1"
    assert shown["backend"]["options"] == {"api_key": "<redacted>", "n_threads": 2}
    assert shown["backend"]["api_key_env"] == "OPENAI_API_KEY" and shown["corpus"]["hf_args"]["name"] == "books"
    assert shown["corpus"]["path"] == "data/<redacted>/books.jsonl"
    assert shown["methods"] == manifest["recipe"]["methods"]  # counts such as max_tokens stay
    assert redact({"max_tokens": 5, "tokenizer": "t", "secret": None}) == {"max_tokens": 5, "tokenizer": "t",
                                                                           "secret": None}
    assert re.search(r"^size_categories:\n- n<1K$", text, re.M)


def test_leak_scan_finds_a_secret_across_read_blocks(tmp_path):
    from lcsynth.out.hub import find_leaks

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"a" * ((1 << 20) - 4) + HF_SECRET.encode() + b"b" * 10)  # straddles the first 1 MiB block
    assert find_leaks([path], {"$HF_TOKEN": HF_SECRET, "$OTHER_TOKEN": OPENAI_SECRET}) == ["rows.jsonl: $HF_TOKEN"]
    path.write_bytes(b"a" * (2 << 20))
    assert find_leaks([path], {"$HF_TOKEN": HF_SECRET}) == []
