"""Tests for lcsynth.corpus.retrieval: BM25 hard-negative retrieval over real text (stdlib docs) and hand-made lines."""

from __future__ import annotations

import csv
import fnmatch
import json
import pydoc
import re
import shlex
import textwrap

import pytest

from lcsynth.corpus.retrieval import (
    RETRIEVERS,
    BM25Retriever,
    Chunk,
    Retriever,
    create_retriever,
    index_folder,
    load_or_build,
    normalise_text,
)
from lcsynth.errors import ConfigError, InputError

TOPICS = [
    Chunk(0, "space", "The telescope observed a distant galaxy whose stars orbit a supermassive black hole."),
    Chunk(1, "cooking", "Knead the bread dough, let the yeast rise for an hour, then bake it in a hot oven."),
    Chunk(2, "sailing", "The sailors trimmed the mainsail and tacked the boat against the strong harbour wind."),
    Chunk(3, "garden", "Water the tomato seedlings every morning and pull the weeds from the vegetable beds."),
    Chunk(4, "finance", "The central bank raised interest rates to slow inflation and cool the housing market."),
    Chunk(5, "music", "The violinist tuned her strings before the orchestra began the symphony's first movement."),
]


def stdlib_chunks() -> list[Chunk]:
    """Paragraphs of the plain-text pydoc pages of a few stdlib modules, one document per module."""
    chunks: list[Chunk] = []
    for module in (json, textwrap, shlex, csv, fnmatch):
        page = pydoc.render_doc(module, renderer=pydoc.plaintext)
        for para in re.split(r"\n\s*\n", page):
            if len(para.split()) >= 8:
                chunks.append(Chunk(len(chunks), module.__name__, para.strip()))
    return chunks


@pytest.fixture(scope="module")
def corpus() -> list[Chunk]:
    return stdlib_chunks()


@pytest.fixture(scope="module")
def stdlib(corpus) -> BM25Retriever:
    return BM25Retriever.build(corpus)


JSON_QUERY = "Deserialize a JSON document from a string or file and return the Python object; decoder errors."


def test_topic_query_ranks_its_chunk_first():
    r = BM25Retriever.build(TOPICS)
    assert len(r) == len(TOPICS)
    assert r.search("How long should bread dough rise before baking?", k=3)[0][0] == 1
    assert r.search("wind and sails on a boat", k=3)[0][0] == 2
    assert r.search("Why do banks change interest rates?", k=3)[0][0] == 4
    [(best, score)] = r.search("orchestra violin strings", k=1)
    assert best == 5 and score > 0
    # Only chunks sharing a word with the query come back; a query of unknown or stop words finds nothing.
    assert [cid for cid, _ in r.search("galaxy", k=10)] == [0]
    assert r.search("zyzzyva quux", k=5) == []
    assert r.search("the and of", k=5) == []
    assert r.search("galaxy", k=0) == []


def test_corpus_is_real_and_spread_over_documents(corpus):
    by_doc = {c.doc_id for c in corpus}
    assert by_doc == {"json", "textwrap", "shlex", "csv", "fnmatch"}
    assert len(corpus) > 60


def test_exclude_doc_and_ids_with_overfetch(stdlib, corpus):
    k = 5
    full = stdlib.search(JSON_QUERY, k=len(stdlib))
    assert len(full) > 3 * k
    # Without exclusions the json page dominates, so excluding it forces the search past its first window.
    top = [stdlib.chunk(cid).doc_id for cid, _ in full[: 2 * k]]
    assert top.count("json") >= k

    hits = stdlib.search(JSON_QUERY, k=k, exclude_doc="json")
    assert len(hits) == k
    assert all(stdlib.chunk(cid).doc_id != "json" for cid, _ in hits)
    assert hits == [h for h in full if stdlib.chunk(h[0]).doc_id != "json"][:k]

    banned = {cid for cid, _ in full[: 3 * k]}
    hits = stdlib.search(JSON_QUERY, k=k, exclude_ids=banned)
    assert len(hits) == k
    assert not banned & {cid for cid, _ in hits}
    assert hits == [h for h in full if h[0] not in banned][:k]

    both = stdlib.search(JSON_QUERY, k=k, exclude_doc="json", exclude_ids=banned)
    assert both == [h for h in full if h[0] not in banned and stdlib.chunk(h[0]).doc_id != "json"][:k]

    # Asking for more than the corpus holds is fine: every surviving match, nothing excluded.
    everything = stdlib.search(JSON_QUERY, k=10 * len(stdlib), exclude_doc="json")
    assert everything == [h for h in full if stdlib.chunk(h[0]).doc_id != "json"]


def test_window_grows_past_many_duplicates():
    query = "Lighthouse keepers trim the lamp wick at dusk."
    copies = [
        Chunk(i, f"copy{i}", variant)
        for i, variant in enumerate(
            [query, query.upper(), "  lighthouse   keepers trim the lamp wick at dusk!!"] * 20, start=100
        )
    ]
    others = [
        Chunk(1, "a", "The lighthouse stands on the rocky cape."),
        Chunk(2, "b", "Two keepers lived alone for forty winters."),
        Chunk(3, "c", "Oil lamps need their wick trimmed often."),
        Chunk(4, "d", "Dusk falls early in the northern winter."),
        Chunk(5, "e", "Completely unrelated text about spreadsheets."),
    ]
    r = BM25Retriever.build(copies + others)
    hits = r.search(query, k=3)
    assert len(hits) == 3
    assert {cid for cid, _ in hits} <= {1, 2, 3, 4}
    # All 60 copies outscore the real answers, so the first candidate window holds only duplicates.
    more = r.search(query, k=10)
    assert sorted(cid for cid, _ in more) == [1, 2, 3, 4]  # chunk 5 shares no word with the query
    assert more[:3] == hits
    assert [s for _, s in more] == sorted((s for _, s in more), reverse=True)


def test_duplicates_of_query_never_returned(stdlib, corpus):
    query_chunk = next(c for c in corpus if c.doc_id == "textwrap" and "dedent" in c.text.lower())
    near = Chunk(10_000, "copy", "  " + query_chunk.text.upper().replace(" ", "   ") + " !")
    superset = Chunk(10_001, "quote", query_chunk.text + " This paragraph was quoted in a tutorial.")
    r = BM25Retriever.build([*corpus, near, superset])
    ids = {cid for cid, _ in r.search(query_chunk.text, k=len(r))}
    assert query_chunk.id not in ids
    assert near.id not in ids
    assert superset.id in ids  # containing the query is not being a duplicate of it
    assert normalise_text(near.text) == normalise_text(query_chunk.text)
    # Queried with other words the chunk itself is found, so it was the duplicate rule that dropped it above.
    assert query_chunk.id in {cid for cid, _ in r.search("dedent common leading whitespace", k=len(r))}


def test_sorted_and_deterministic_across_builds(corpus):
    a = BM25Retriever.build(corpus)
    b = BM25Retriever.build(reversed(corpus))
    for query in (JSON_QUERY, "split a shell command line with quotes", "wrap text paragraphs to a width"):
        ra, rb = a.search(query, k=12), b.search(query, k=12)
        assert len(ra) >= 8
        assert ra == rb
        scores = [s for _, s in ra]
        assert scores == sorted(scores, reverse=True)


def test_ties_broken_by_ascending_id():
    tied = [Chunk(7, "x", "red apple pie"), Chunk(3, "y", "red apple pie"), Chunk(5, "z", "red apple pie")]
    rest = [Chunk(1, "w", "green pear"), Chunk(2, "v", "red apple orchard harvest festival in autumn")]
    for chunks in (tied + rest, rest + tied[::-1]):
        hits = BM25Retriever.build(chunks).search("apple pie", k=3)
        assert [cid for cid, _ in hits] == [3, 5, 7]
        assert len({s for _, s in hits}) == 1


def test_chunk_lookup_and_bad_ids():
    r = BM25Retriever.build(TOPICS)
    assert r.chunk(3) == TOPICS[3]
    with pytest.raises(KeyError):
        r.chunk(99)
    with pytest.raises(ValueError, match="unique"):
        BM25Retriever.build([Chunk(1, "a", "one text"), Chunk(1, "b", "another text")])


def test_save_then_load_gives_same_results(tmp_path, stdlib, corpus):
    folder = tmp_path / "idx"
    stdlib.save(folder)
    assert json.loads((folder / "index.json").read_text())["chunks"] == len(corpus)
    loaded = BM25Retriever.load(folder)
    assert len(loaded) == len(stdlib)
    assert all(loaded.chunk(c.id) == c for c in corpus)
    for query in (JSON_QUERY, "quote a string for the shell", "Unix filename pattern matching"):
        for kwargs in ({}, {"exclude_doc": "json"}, {"exclude_ids": {0, 1, 2}}):
            assert loaded.search(query, k=8, **kwargs) == stdlib.search(query, k=8, **kwargs)


def test_load_rejects_incomplete_folder(tmp_path):
    BM25Retriever.build(TOPICS).save(tmp_path)
    (tmp_path / "index.json").unlink()
    with pytest.raises(InputError, match="index.json missing"):
        BM25Retriever.load(tmp_path)


def test_load_or_build_builds_once(tmp_path, corpus):
    calls = []

    def factory():
        calls.append(1)
        return iter(corpus)

    folder = index_folder(tmp_path, "fp123")
    assert folder == tmp_path / "retrieval" / "fp123"
    first = load_or_build(folder, factory)
    second = load_or_build(folder, factory)
    assert len(calls) == 1
    assert (folder / "index.json").is_file()
    assert second.search(JSON_QUERY, k=6, exclude_doc="json") == first.search(JSON_QUERY, k=6, exclude_doc="json")

    # A folder whose save never finished (no index.json) is rebuilt, not loaded.
    (folder / "index.json").unlink()
    load_or_build(folder, factory)
    assert len(calls) == 2


def test_empty_corpus_round_trips(tmp_path):
    r = BM25Retriever.build([])
    assert len(r) == 0
    assert r.search("anything", k=3) == []
    r.save(tmp_path)
    assert len(BM25Retriever.load(tmp_path)) == 0


def test_registry_and_unknown_name():
    assert set(RETRIEVERS) == {"bm25"}
    r = create_retriever("bm25", TOPICS)
    assert isinstance(r, Retriever)
    assert r.search("telescope galaxy", k=1)[0][0] == 0
    with pytest.raises(ConfigError, match="known: bm25"):
        create_retriever("dense", TOPICS)
