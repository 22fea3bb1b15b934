import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lcsynth.config import CorpusSpec
from lcsynth.corpus.demo import DEMO_MODULES, iter_demo_documents, write_demo_corpus
from lcsynth.corpus.readers import iter_documents
from lcsynth.errors import ConfigError, InputError

ROWS = [{"id": "a", "text": "first document", "lang": "en"}, {"id": "7", "text": "second", "lang": "fr"}]


def test_jsonl_reads_ids_text_and_plain_meta(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    docs = list(iter_documents(CorpusSpec(type="jsonl", path=str(path))))
    assert [(d.id, d.text, d.meta["lang"]) for d in docs] == [("a", "first document", "en"), ("7", "second", "fr")]
    assert docs[0].meta["source"] == str(path)


def test_jsonl_custom_field_and_fallback_id(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"body": "x y z"}) + "\n")
    (doc,) = iter_documents(CorpusSpec(type="jsonl", path=str(path), text_field="body", id_field="uid"))
    assert (doc.id, doc.text) == ("c:1", "x y z")


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(InputError, match=r"c.jsonl:2: not valid JSON"):
        list(iter_documents(CorpusSpec(type="jsonl", path=str(path))))


def test_jsonl_missing_text_field_lists_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": 1, "content": "x"}) + "\n")
    with pytest.raises(InputError, match=r"no text field 'text' \(fields: content, id\)"):
        list(iter_documents(CorpusSpec(type="jsonl", path=str(path))))


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(iter_documents(CorpusSpec(type="jsonl", path=str(tmp_path / "nope.jsonl"))))
    with pytest.raises(ConfigError, match="needs a path"):
        list(iter_documents(CorpusSpec(type="parquet")))


def test_parquet_streams_every_row_of_every_file(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    for part in range(2):
        table = pa.table({"id": [f"{part}-{i}" for i in range(300)], "text": [f"doc {part} {i}" for i in range(300)]})
        pq.write_table(table, folder / f"part{part}.parquet", row_group_size=100)
    docs = list(iter_documents(CorpusSpec(type="parquet", path=str(folder))))
    assert len(docs) == 600
    assert docs[0].id == "0-0" and docs[-1].text == "doc 1 299"


def test_bad_parquet_file(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(iter_documents(CorpusSpec(type="parquet", path=str(path))))


def test_text_dir_reads_txt_and_md_in_sorted_order(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.md").write_text("bee")
    (tmp_path / "d" / "sub" / "a.txt").write_text("ay")
    (tmp_path / "d" / "skip.json").write_text("{}")
    docs = list(iter_documents(CorpusSpec(type="text_dir", path=str(tmp_path / "d"))))
    assert [(d.id, d.text) for d in docs] == [("b.md", "bee"), ("sub/a.txt", "ay")]


def test_hf_saved_dataset_and_load_dataset_args(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    saved = list(iter_documents(CorpusSpec(type="hf", path=str(tmp_path / "saved"))))
    assert [d.id for d in saved] == ["a", "7"]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    spec = CorpusSpec(type="hf", hf_args={"path": "json", "data_files": str(tmp_path / "c.jsonl")})
    assert [d.text for d in iter_documents(spec)] == ["first document", "second"]


def test_demo_corpus_is_real_pydoc_text_in_a_fixed_order():
    docs = list(iter_demo_documents(DEMO_MODULES[:3]))
    assert [d.id for d in docs] == [f"pydoc:{m}" for m in DEMO_MODULES[:3]]
    assert "class ArgumentParser" in docs[0].text
    assert "\nFILE\n" not in docs[0].text
    assert [d.text for d in iter_demo_documents(DEMO_MODULES[:3])] == [d.text for d in docs]


def test_demo_corpus_written_as_jsonl_reads_back(tmp_path):
    path = write_demo_corpus(tmp_path / "out")
    docs = list(iter_documents(CorpusSpec(type="jsonl", path=str(path))))
    assert len(docs) >= 50
    assert docs[1].id == "pydoc:ast" and docs[1].meta["module"] == "ast"


def test_demo_corpus_is_the_same_in_every_process():
    import subprocess
    import sys

    code = "from lcsynth.corpus.demo import render_module; print(render_module('configparser'), end='')"
    first, second = (subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
                     for _ in range(2))
    assert first == second and "fallback=<object object>" in first and " at 0x" not in first


def test_the_demo_corpus_ignores_what_the_process_patched(monkeypatch):
    """Imported packages may patch the standard library (one replaces inspect.getfile); pydoc would print the
    patch, so the pages are rendered by a clean interpreter and read the same whatever this process did."""
    import inspect

    from lcsynth.corpus import demo

    before = demo.render_module("inspect")

    def _patched_getfile(obj):  # as such a package installs it
        return "somewhere"

    monkeypatch.setattr(inspect, "getfile", _patched_getfile)
    demo._pages.cache_clear()
    after = demo.render_module("inspect")
    assert after == before and "_patched_getfile" not in after and "getfile(object)" in after
    with pytest.raises(ImportError):
        demo.render_module("no_such_module_here")
