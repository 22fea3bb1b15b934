"""`lcsynth view`: the index of a run (lazy, bounded, following a run being written) and the server's boundaries.

The browser tests are in test_view_browser.py.
"""

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest
from view_run import build_view_run, serving

from lcsynth.view.index import RunIndex
from lcsynth.view.query import Filter, select
from lcsynth.view.spans import laid_out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return build_view_run(tmp_path_factory.mktemp("view"))


def lines_of(run_dir, name):
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def test_index_counts_and_filters_match_the_files(run_dir):
    index = RunIndex(run_dir)
    assert index.refresh() and not index.refresh()  # a second refresh finds nothing new
    rows = {kind: lines_of(run_dir, f"{kind}-00000.jsonl") for kind in ("pretrain", "grpo", "dpo")}
    rejects = lines_of(run_dir, "rejects.jsonl")
    summary = index.summary()
    assert summary["kinds"] == {**{k: len(v) for k, v in rows.items()}, "reject": len(rejects)}
    assert summary["reasons"] == {r: sum(x["reason"] == r for x in rejects) for r in {x["reason"] for x in rejects}}
    every = select(index, Filter(), 0, 500)
    assert every["total"] == sum(map(len, rows.values())) + len(rejects) and every["complete"]
    keychain = select(index, Filter(method="keychain"), 0, 500)["rows"]
    assert len(keychain) == sum(r["meta"]["method"] == "keychain" for r in rows["grpo"]) > 0
    reason = rejects[0]["reason"]
    assert {r["id"] for r in select(index, Filter(reason=reason), 0, 500)["rows"]} == {
        f"rejects.jsonl:{i}" for i, x in enumerate(rejects) if x["reason"] == reason}
    tokens = sorted(r["meta"]["n_tokens"] for r in rows["pretrain"])
    middle = select(index, Filter(kind="pretrain", min_tokens=tokens[1], max_tokens=tokens[-2]), 0, 500)["rows"]
    assert sorted(r["tokens"] for r in middle) == tokens[1:-1]
    chunk_id = rows["pretrain"][0]["meta"]["chunks"][0]["id"] or "Python Library"
    found = select(index, Filter(text=chunk_id), 0, 500)["rows"]
    expected = [f"{kind}-00000.jsonl:{i}" for kind in ("dpo", "grpo", "pretrain")
                for i, row in enumerate(rows[kind]) if chunk_id in json.dumps(row, ensure_ascii=False)]
    assert [r["id"] for r in found] == expected


def test_spans_are_the_meta_spans(run_dir):
    for kind in ("pretrain", "grpo", "dpo"):
        for row in lines_of(run_dir, f"{kind}-00000.jsonl"):
            shown = laid_out(kind, row)
            texts = {f["path"]: f["text"] for f in shown["fields"]}
            got = sorted((s["field"], s["start"], s["end"]) for s in shown["spans"])
            meta = row["meta"]
            if meta["method"] == "untie_knots" and kind == "pretrain":
                want = [("text", *c["char_span"]) for c in meta["chunks"]]
                want += [("text", *s) for s in meta["no_loss_spans"]]
            elif meta["method"] == "nextlong":
                want = [("text", *s) for s in meta["meta_chunk_spans"] + meta["negative_spans"]]
            elif meta["method"] == "keychain":
                want = [(f"prompt.{x['message']}.content", *x["char_span"])
                        for x in meta["evidence"] + meta["chain"]["links"]]
            elif meta["method"] == "longpo":
                (span,) = shown["spans"]
                chunk = texts[span["field"]][span["start"]:span["end"]]
                assert len(chunk) > 200 and any(chunk in t for p, t in texts.items() if p.startswith("short_prompt"))
                continue
            else:  # untie_knots tracing rows: the markers of the chunks the question is about
                assert {texts[f][s:e].split()[1] for f, s, e in got} == set(meta["chunk_ids"])
                continue
            assert got == sorted(tuple(w) for w in want)


def test_index_follows_a_run_being_written_and_one_cut_back(tmp_path):
    partial = tmp_path / "sft-00000.jsonl.partial"
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
           "meta": {"method": "template", "n_tokens": 7, "doc_id": "d"}}
    line = json.dumps(row, separators=(",", ":")) + "\n"
    partial.write_text(line + line[:20])  # the second line is still being written
    index = RunIndex(tmp_path)
    index.refresh()
    assert index.summary()["kinds"] == {"sft": 1}
    with partial.open("a") as handle:
        handle.write(line[20:] + line)
    index.refresh()
    assert index.summary()["lines"] == 3 and json.loads(index.read("sft-00000.jsonl", 2)) == row
    partial.rename(tmp_path / "sft-00000.jsonl")  # the shard is finished
    assert not index.refresh() and json.loads(index.read("sft-00000.jsonl", 1)) == row
    (tmp_path / "sft-00000.jsonl").write_text(line)  # a resumed run cut it back
    index.refresh()
    assert index.summary()["lines"] == 1 and index.summary()["methods"] == {"template": 1}


LARGE = textwrap.dedent("""
    import sys
    from lcsynth.view.index import RunIndex
    from lcsynth.view.query import Filter, select
    index = RunIndex(__import__("pathlib").Path(sys.argv[1]))
    index.refresh()
    page = select(index, Filter(min_tokens=131000), 0, 50)
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
    print(index.summary()["lines"], page["total"], int(peak) // 1024)  # ru_maxrss would include the forking parent
""")


def test_a_large_run_is_indexed_in_bounded_memory(tmp_path):
    """100,000 rows, and rows of 128K tokens (about 600 KB each) among them: the index keeps offsets, not text."""
    small = {"text": "x" * 1000, "meta": {"method": "nextlong", "n_tokens": 300, "doc_id": "d"}}
    big = {"text": "word " * 120_000, "meta": {"method": "nextlong", "n_tokens": 131072, "doc_id": "big"}}
    small_line, big_line = (json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in (small, big))
    with (tmp_path / "pretrain-00000.jsonl").open("wb") as handle:
        for i in range(100_000):
            handle.write(big_line if i % 1000 == 0 else small_line)
    result = subprocess.run([sys.executable, "-c", LARGE, str(tmp_path)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr
    lines, big_rows, peak_mb = map(int, result.stdout.split())
    assert lines == 100_000 and big_rows == 100
    assert peak_mb < 150, f"peak RSS {peak_mb} MB"  # Python and lcsynth's imports take about 45 MB of it


def test_the_server_serves_nothing_outside_the_run(run_dir):
    with serving(run_dir) as url:
        check_boundaries(run_dir, url)


def check_boundaries(run_dir, url):
    secret = run_dir.parent / "secret.txt"
    secret.write_text("not for the page")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/manifest.json", "/report.html",
                 "/api/row?id=../secret.txt:0", "/api/row?id=manifest.json:0", "/api/row?id=/etc/passwd:0",
                 "/api/row?id=rejects.jsonl:99999", "/api/row?id=rejects.jsonl:-1", "/static/../secret.txt",
                 "/api/row?id=..%2F..%2Fsecret.txt:0"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url.rstrip("/") + path, timeout=10).read()
        assert caught.value.code == 404, path
    assert b"lcsynth view" in urllib.request.urlopen(url, timeout=10).read()
    row = json.loads(urllib.request.urlopen(url + "api/row?id=rejects.jsonl:0", timeout=10).read())
    assert row["kind"] == "reject" and row["meta"]["reason"]


def test_view_mistakes_are_one_line(tmp_path):
    for args, message in ((["nowhere"], "error: nowhere: no such run folder"),
                          ([str(tmp_path)], "is this a run folder?")):
        result = subprocess.run([sys.executable, "-m", "lcsynth.cli", "view", *args], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_document_boundaries_of_multi_document_contexts():
    from lcsynth.methods.mixing import DOCUMENT_BANNER, numbered_documents

    texts = ["First document.", "Second one.", "Third."]
    magpie = {"messages": [{"role": "user", "content": "Read:\n" + DOCUMENT_BANNER.join(texts) + "\nWhy?"},
                           {"role": "assistant", "content": "Because."}],
              "meta": {"method": "longmagpie", "documents": ["a", "b", "c"]}}
    wild = {"messages": [{"role": "user", "content": numbered_documents(texts) + "\n\nCompare them."}],
            "meta": {"method": "wildlong", "documents": ["a", "b", "c"]}}
    for row, labels, starts in ((magpie, ["document 2: b", "document 3: c"], texts[1:]),
                                (wild, ["document 1: a", "document 2: b", "document 3: c"], texts)):
        shown = laid_out("sft", row)
        content = row["messages"][0]["content"]
        assert [s["label"] for s in shown["spans"]] == labels
        for s, start in zip(shown["spans"], starts, strict=True):
            assert content[s["end"]:].lstrip().startswith(start)


def test_spans_count_utf16_units_as_the_page_does():
    text = "😀 ab " + "x" * 10
    row = {"text": text, "meta": {"method": "nextlong", "meta_chunk_spans": [[2, 4]], "negative_spans": [],
                                  "negatives": [], "source_doc_id": "d"}}
    (shown,) = laid_out("pretrain", row)["spans"]
    assert (shown["start"], shown["end"]) == (3, 5)
    assert text.encode("utf-16-le")[2 * shown["start"]:2 * shown["end"]].decode("utf-16-le") == "ab"
