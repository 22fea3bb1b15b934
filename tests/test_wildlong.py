"""WildLong: the attribute graph and its walks (exact), and the method's stages with a scripted backend (a fake)."""

import asyncio
import json
import random
from collections import Counter

import networkx as nx
import pytest
from conftest import text
from test_pipeline import corpus, recipe

from lcsynth.errors import InputError
from lcsynth.methods.attribute_graph import attributes_of, build_graph, load_graph, node_id, random_walk, save_graph
from lcsynth.methods.mixing import numbered_documents
from lcsynth.methods.wildlong import read_seed_requests
from lcsynth.prompts.schemas import validation_error
from lcsynth.run.local import run_recipe

TABLE = [
    {"task_type": ["summarization"], "tone": ["formal"], "domain": ["law"]},
    {"task_type": ["summarization"], "tone": ["formal"], "domain": ["finance"]},
    {"task_type": ["comparison"], "tone": ["casual"], "domain": ["finance"], "skills": ["math", "reading"]},
    {"task_type": ["qa"], "output_format": ["list"]},
]


def test_graph_edges_and_weights_are_the_co_occurrence_counts():
    graph = build_graph(TABLE)
    assert graph.nodes[node_id("task_type", "summarization")]["count"] == 2
    assert graph.nodes[node_id("domain", "finance")]["count"] == 2
    expected = Counter()
    for table in TABLE:
        nodes = [node_id(f, v) for f, values in table.items() for v in values]
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                if a.split("=")[0] != b.split("=")[0]:
                    expected[frozenset((a, b))] += 1
    assert {frozenset(e): w for *e, w in graph.edges(data="weight")} == dict(expected)
    assert graph.edges[node_id("task_type", "summarization"), node_id("tone", "formal")]["weight"] == 2
    assert not graph.has_edge(node_id("skills", "math"), node_id("skills", "reading"))  # same field: no edge
    assert all(graph.nodes[a]["field"] != graph.nodes[b]["field"] for a, b in graph.edges)
    assert set(build_graph(TABLE, min_count=2)) == {"task_type=summarization", "tone=formal", "domain=finance"}


def test_attributes_are_normalized_phrases():
    table = attributes_of({"task_type": " Summarization. ", "skills": ["Math", "math ", ""], "tone": 3})
    assert table == {"task_type": ["summarization"], "skills": ["math"]}


def walk_is_valid(graph, path):
    first = path[0]
    assert graph.nodes[first]["field"] == "task_type"
    fields = [graph.nodes[n]["field"] for n in path]
    assert len(set(fields)) == len(fields)  # one value per field
    for before, node in zip(path, path[1:], strict=False):  # a step leaves the last node or the first
        assert graph.has_edge(before, node) or graph.has_edge(first, node)
    assert all(nx.has_path(graph, first, n) for n in path)


def test_walks_visit_only_connected_attributes_and_are_reproducible():
    graph = build_graph(TABLE)
    walks = [random_walk(graph, random.Random(s), 4, restart=0.3, power=0.5) for s in range(200)]
    for path in walks:
        walk_is_valid(graph, path)
        assert len(path) <= 4
    # qa only reaches output_format: its walks end at two attributes
    assert {len(p) for p in walks if p[0] == node_id("task_type", "qa")} == {2}
    assert walks == [random_walk(graph, random.Random(s), 4, restart=0.3, power=0.5) for s in range(200)]
    assert len({tuple(p) for p in walks}) > 5


def test_step_frequencies_follow_edge_weights():
    table = [{"task_type": ["t"], "tone": ["a"]}] * 6 + [{"task_type": ["t"], "domain": ["b"]}] * 3 + \
            [{"task_type": ["t"], "skills": ["c"]}]
    graph = build_graph(table)
    rng = random.Random(7)
    steps = Counter(random_walk(graph, rng, 2)[1] for _ in range(3000))
    observed = [steps[node_id("tone", "a")], steps[node_id("domain", "b")], steps[node_id("skills", "c")]]
    expected = [3000 * 6 / 10, 3000 * 3 / 10, 3000 * 1 / 10]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    assert chi2 < 13.8  # chi-square, 2 degrees of freedom, p = 0.001
    # a power below 1 lifts the rare value: weight * count**(power - 1) = 6**0, 3**0, 1**0 with power 0
    flat = Counter(random_walk(graph, rng, 2, power=0.0)[1] for _ in range(3000))
    assert min(flat.values()) > 800


def same_graph(a, b):
    edges = {frozenset((u, v)): w for u, v, w in a.edges(data="weight")}
    return dict(a.nodes(data=True)) == dict(b.nodes(data=True)) and \
        edges == {frozenset((u, v)): w for u, v, w in b.edges(data="weight")}


def test_saved_graph_loads_back_identical(tmp_path):
    graph = build_graph(TABLE)
    save_graph(graph, tmp_path / "g")
    for name in ("graph.json", "graph.graphml"):
        loaded = load_graph(tmp_path / "g" / name)
        assert same_graph(graph, loaded)
        assert [random_walk(loaded, random.Random(s), 4) for s in range(20)] == \
               [random_walk(graph, random.Random(s), 4) for s in range(20)]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not an attribute graph"):
        load_graph(tmp_path / "bad.json")


def test_seed_requests_file_forms_and_errors(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"text": "Summarize this."}\n{"messages": [{"role": "user", "content": "Compare these."}]}\n')
    assert read_seed_requests(str(path)) == ["Summarize this.", "Compare these."]
    path.write_text('{"text": "ok"}\n{"other": 1}\n')
    with pytest.raises(InputError, match="line 2"):
        read_seed_requests(str(path))


ATTRIBUTES = {
    "summarize": {"task_type": "summarization", "tone": "formal", "domain": "software", "output_format": "bullets"},
    "compare": {"task_type": "comparison", "tone": "formal", "domain": "software", "output_format": "table"},
    "explain": {"task_type": "explanation", "tone": "casual", "domain": "software", "reasoning_type": "causal"},
}
META_REST = {"document_type": "manual", "user_intent": "learn", "required_knowledge": "python", "skills": ["reading"],
             "constraints": [], "reasoning_type": "deductive", "output_format": "prose"}


def wildlong_reply(request):
    if request.prompt is not None:  # a seed request, written at an empty user turn
        return text("Please summarize what this module offers and how to use it.")
    messages = request.message_dicts()
    system, last = messages[0]["content"], messages[-1]["content"]
    if system.startswith("You describe user requests"):
        verb = next((v for v in ATTRIBUTES if v in last.lower()), None)
        if verb is None:
            return text("{not json")
        return text(json.dumps({**META_REST, **ATTRIBUTES[verb]}))
    if system.startswith("You write requests"):
        return text(json.dumps({"instruction": "Draft: " + " / ".join(last.splitlines()[1:])}))
    if last.startswith("Rewrite this request"):
        return text(json.dumps({"instruction": "List the functions the documents describe, by " + last[30:60]}))
    return text("The documents describe functions for encoding and wrapping text.")


def run_wildlong(tmp_path, scripted, params, seeds, name="wl"):
    from lcsynth.corpus.demo import render_module

    docs = [render_module(m) for m in ("json", "textwrap", "shlex", "base64")]
    seeds_path = tmp_path / "seeds.jsonl"
    seeds_path.write_text("".join(json.dumps({"text": s}) + "\n" for s in seeds))
    spec = recipe(corpus(tmp_path, docs), methods=[{"name": "wildlong", "seeds": str(seeds_path), **params}],
                  output={"name": name}, context={"max_document_tokens": 3000})
    backend = scripted(wildlong_reply)
    summary = asyncio.run(run_recipe(spec, backend, show_progress=False))
    return summary, backend, docs


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


SEEDS = ["Summarize the report", "Compare the two plans", "Explain the error", "Summarize the notes again",
         "Nothing to see here"]


def test_stages_build_the_graph_then_write_rows(tmp_path, scripted):
    summary, backend, docs = run_wildlong(tmp_path, scripted, {"path_length": [3, 4]}, SEEDS)
    folder = summary.run_dir / "wildlong"
    tables = read(folder / "attributes.jsonl")
    assert [t["seed"] for t in tables] == [0, 1, 2, 3]  # the fifth seed's attributes never parsed
    graph = load_graph(folder / "graph.json")
    assert graph.nodes[node_id("task_type", "summarization")]["count"] == 2
    assert same_graph(graph, build_graph(t["attributes"] for t in tables))
    rejects = read(summary.run_dir / "rejects.jsonl")
    assert [(r["doc_id"], r["reason"]) for r in rejects] == [("seed:4", "invalid_json")]
    rows = read(summary.run_dir / "sft-00000.jsonl")
    assert summary.rows == {"sft": 4} and len(rows) == 4
    for row in rows:
        assert validation_error(row, "sft") is None
        meta = row["meta"]
        attributes = [node_id(f, v) for f, v in meta["meta_path"]]
        walk_is_valid(graph, attributes)
        assert 3 <= len(attributes) <= 4
        user, assistant = row["messages"]
        source = next(d for i, d in enumerate(docs) if f"doc{i}" == meta["doc_id"])
        assert user["content"].startswith(source[:200])
        assert user["content"].rsplit("\n\n", 1)[1].startswith("List the functions the documents describe, by ")
        assert meta["instruction_raw"].startswith("Draft: - task type: ")
        assert assistant["content"].startswith("The documents describe")


def test_multi_document_units_number_their_documents(tmp_path, scripted):
    summary, _, docs = run_wildlong(tmp_path, scripted, {"documents": 3, "samples_per_document": 3}, SEEDS)
    rows = read(summary.run_dir / "sft-00000.jsonl")
    assert rows and {r["meta"]["n_docs"] for r in rows} >= {1, 2}
    for row in rows:
        meta, user = row["meta"], row["messages"][0]["content"]
        if meta["n_docs"] > 1:
            texts = [docs[int(i.removeprefix("doc"))] for i in meta["documents"]]
            assert user.startswith(numbered_documents(texts))
            assert user.count("Document ") >= meta["n_docs"] and meta["doc_id"] in meta["documents"]
        else:
            assert meta["documents"] == [meta["doc_id"]]


def test_a_resumed_or_later_run_reuses_the_saved_graph(tmp_path, scripted):
    first, _, _ = run_wildlong(tmp_path, scripted, {}, SEEDS)
    saved = first.run_dir / "wildlong" / "graph.graphml"
    again, backend, _ = run_wildlong(tmp_path, scripted, {"graph": str(saved)}, ["Tell me nothing"], name="reuse")
    assert not any(r.message_dicts()[0]["content"].startswith("You describe") for r in backend.history
                   if r.messages)
    assert again.rows == first.rows and not (again.run_dir / "wildlong").exists()


def test_a_graph_without_task_values_is_a_clear_error(tmp_path, scripted):
    from lcsynth.errors import ConfigError

    with pytest.raises(ConfigError, match="no 'task_type' value"):
        run_wildlong(tmp_path, scripted, {}, ["Nothing here", "Nor here"])


def test_without_a_seeds_file_the_model_writes_seed_requests_from_corpus_openings(tmp_path, scripted):
    from lcsynth.corpus.demo import render_module

    docs = [render_module(m) for m in ("json", "textwrap", "shlex")]
    spec = recipe(corpus(tmp_path, docs), methods=[{"name": "wildlong", "seed_requests": 2}],
                  output={"name": "selfseed"}, context={"max_document_tokens": 3000})
    backend = scripted(wildlong_reply)
    summary = asyncio.run(run_recipe(spec, backend, show_progress=False))
    seed_prompts = [r for r in backend.history if r.prompt is not None]
    assert len(seed_prompts) == 2 and all(r.prompt.endswith("<|im_start|>user\n") for r in seed_prompts)
    assert "\n" in seed_prompts[0].stop and docs[0][:100] in seed_prompts[0].prompt
    tables = read(summary.run_dir / "wildlong" / "attributes.jsonl")
    assert [t["request"] for t in tables] == ["Please summarize what this module offers and how to use it."] * 2
    assert summary.rows == {"sft": 3}
