"""WildLong's attribute graph: co-occurring task attributes, and random walks that combine them anew.

A node is one (field, value) pair seen in the extracted meta-information of real user requests; an
edge joins two values of different fields that occurred in the same request, weighted by how often
they did. A walk from a task node gathers at most one value per field; combinations no single request
had arise wherever paths cross.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path
from typing import Any

import networkx as nx

from lcsynth.errors import InputError

Attributes = dict[str, list[str]]  # field -> values of one request


def node_id(field: str, value: str) -> str:
    """The graph's name for a (field, value) pair.

    >>> node_id("task_type", "summarization")
    'task_type=summarization'
    """
    return f"{field}={value}"


def normalize_value(value: str, max_chars: int = 48) -> str:
    """A short lower-case phrase: trimmed, single-spaced, without edge punctuation.

    >>> normalize_value("  Step-by-step   Reasoning. ")
    'step-by-step reasoning'
    """
    text = " ".join(str(value).lower().split()).strip(" .,;:!?\"'()[]{}")
    return text[:max_chars].rstrip()


def attributes_of(extracted: dict[str, Any]) -> Attributes:
    """The normalized values per field of one extraction (lists kept as several values, blanks dropped)."""
    table: Attributes = {}
    for field, raw in extracted.items():
        values = raw if isinstance(raw, list) else [raw]
        clean = sorted({normalize_value(v) for v in values if isinstance(v, str)} - {""})
        if clean:
            table[field] = clean
    return table


def build_graph(tables: Iterable[Attributes], min_count: int = 1) -> nx.Graph:
    """The co-occurrence graph of attribute tables; nodes seen fewer than `min_count` times are left out."""
    graph = nx.Graph()
    tables = list(tables)
    for table in tables:
        nodes = [(field, value) for field in sorted(table) for value in table[field]]
        for field, value in nodes:
            name = node_id(field, value)
            if name not in graph:
                graph.add_node(name, field=field, value=value, count=0)
            graph.nodes[name]["count"] += 1
        for (f1, v1), (f2, v2) in combinations(nodes, 2):
            if f1 != f2:
                a, b = node_id(f1, v1), node_id(f2, v2)
                weight = graph.edges[a, b]["weight"] if graph.has_edge(a, b) else 0
                graph.add_edge(a, b, weight=weight + 1)
    graph.remove_nodes_from([n for n, count in graph.nodes(data="count") if count < min_count])
    return graph


def save_graph(graph: nx.Graph, folder: Path) -> None:
    """Write the graph as GraphML (for graph tools) and node-link JSON (what lcsynth reads back)."""
    folder.mkdir(parents=True, exist_ok=True)
    nx.write_graphml(graph, folder / "graph.graphml")
    data = nx.node_link_data(graph, edges="edges")
    (folder / "graph.json").write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def load_graph(path: Path) -> nx.Graph:
    """Read a graph saved by `save_graph` (either file), or fail in one line."""
    if not path.exists():
        raise InputError(f"{path}: no such attribute graph")
    try:
        if path.suffix == ".graphml":
            graph = nx.read_graphml(path)
        else:
            graph = nx.node_link_graph(json.loads(path.read_text(encoding="utf-8")), edges="edges")
    except (ValueError, KeyError, json.JSONDecodeError, nx.NetworkXError) as err:
        raise InputError(f"{path}: not an attribute graph ({err})") from None
    if any("field" not in data or "count" not in data for _, data in graph.nodes(data=True)):
        raise InputError(f"{path}: nodes lack the 'field' and 'count' attributes of an attribute graph")
    return graph


def random_walk(graph: nx.Graph, rng: random.Random, length: int, start_field: str = "task_type",
                restart: float = 0.0, power: float = 1.0) -> list[str]:
    """A walk of up to `length` nodes from a `start_field` node, with at most one node per field.

    The start is drawn with weight count**power; each step goes to a neighbour of the current node with
    weight edge_weight * count**(power - 1), so power 1 follows the raw co-occurrence counts and a
    smaller power lifts rare values. With probability `restart` a step starts again from the first node
    (which keeps the combination about one task); a dead end does the same once before the walk stops.
    """
    starts = sorted(n for n, field in graph.nodes(data="field") if field == start_field)
    if not starts:
        raise InputError(f"the attribute graph has no '{start_field}' node to start a walk from")
    counts = graph.nodes(data="count")
    current = first = rng.choices(starts, weights=[counts[n] ** power for n in starts])[0]
    path, fields = [first], {start_field}
    while len(path) < length:
        if current != first and rng.random() < restart:
            current = first
        options = _steps(graph, current, fields, power)
        if not options and current != first:
            current = first
            options = _steps(graph, current, fields, power)
        if not options:
            break
        current = rng.choices([n for n, _ in options], weights=[w for _, w in options])[0]
        path.append(current)
        fields.add(graph.nodes[current]["field"])
    return path


def _steps(graph: nx.Graph, node: str, fields: set[str], power: float) -> list[tuple[str, float]]:
    """Neighbours of `node` in fields not yet on the path, with their step weights, in a fixed order."""
    return [(n, graph.edges[node, n]["weight"] * graph.nodes[n]["count"] ** (power - 1))
            for n in sorted(graph.neighbors(node)) if graph.nodes[n]["field"] not in fields]


def path_attributes(graph: nx.Graph, path: list[str]) -> list[list[str]]:
    """A walk as [field, value] pairs, in walk order."""
    return [[graph.nodes[n]["field"], graph.nodes[n]["value"]] for n in path]


_FIELD_WORDS = re.compile(r"_+")


def describe(attributes: list[list[str]]) -> str:
    """Attributes as the lines an instruction-writing prompt shows.

    >>> print(describe([["task_type", "summary"], ["tone", "formal"]]))
    - task type: summary
    - tone: formal
    """
    return "\n".join(f"- {_FIELD_WORDS.sub(' ', field)}: {value}" for field, value in attributes)
