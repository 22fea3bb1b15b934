"""A row laid out for reading: its text fields in order and the spans each method records in `meta`.

Every span names a text field (`text`, `messages.0.content`, `prompt.1.content`, …), a start and end in
that field's characters, a class (what it is) and a label. Offsets sent to the page count UTF-16 code
units, as JavaScript strings do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from lcsynth.methods.mixing import DOCUMENT_BANNER

Span = dict[str, Any]
HEADER = re.compile(r"^Document (\d+):$", re.M)


def text_fields(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's readable texts in order: messages, prompt, chosen, rejected, short prompt, or text."""
    fields = []
    for key in ("messages", "prompt", "chosen", "rejected", "short_prompt"):
        value = row.get(key)
        if isinstance(value, str):
            fields.append({"path": key, "group": key, "role": key, "text": value})
        elif isinstance(value, list):
            for i, message in enumerate(value):
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    fields.append({"path": f"{key}.{i}.content", "group": key, "role": message.get("role", ""),
                                   "text": message["content"]})
    if isinstance(row.get("text"), str):
        fields.append({"path": "text", "group": "text", "role": "text", "text": row["text"]})
    return fields


def span(field: str, start: int, end: int, cls: str, label: str, length: int) -> Span:
    """One span, with its depth (where it starts, as a share of its field)."""
    return {"field": field, "start": start, "end": end, "cls": cls, "label": label,
            "depth": round(start / length, 4) if length else 0.0}


def untie_knots(row: dict[str, Any], meta: dict[str, Any], texts: dict[str, str]) -> list[Span]:
    """Chunks of the shuffled documents and their id markers; in tracing rows, the markers of the asked chunks."""
    spans: list[Span] = []
    if "text" in texts:
        n = len(texts["text"])
        for start, end in meta.get("no_loss_spans", []):
            spans.append(span("text", start, end, "marker", "chunk id marker (no loss)", n))
        for chunk in meta.get("chunks", []):
            start, end = chunk["char_span"]
            spans.append(span("text", start, end, "chunk", f"{chunk['doc_id']} · chunk {chunk['chunk'] + 1}/"
                              f"{chunk['of']}{' · ' + chunk['id'] if chunk.get('id') else ''}", n))
        return spans
    for path, text in texts.items():
        for chunk_id in meta.get("chunk_ids", []):
            at = text.find(f" {chunk_id} ")
            while at >= 0:
                start, end = text.rfind("\n", 0, at) + 1, text.find("\n", at)
                end = len(text) if end < 0 else end
                if end - start < 80:
                    spans.append(span(path, start, end, "marker", f"marker of chunk {chunk_id}", len(text)))
                at = text.find(f" {chunk_id} ", at + 1)
    return spans


def nextlong(row: dict[str, Any], meta: dict[str, Any], texts: dict[str, str]) -> list[Span]:
    """Meta-chunks of the source document and the hard negatives retrieved for them, with scores."""
    n = len(texts.get("text", ""))
    spans = [span("text", s, e, "meta-chunk", f"meta-chunk {i + 1} of {meta.get('source_doc_id')}", n)
             for i, (s, e) in enumerate(meta.get("meta_chunk_spans", []))]
    for (s, e), negative in zip(meta.get("negative_spans", []), meta.get("negatives", []), strict=False):
        chunk_id, score, doc_id = negative
        spans.append(span("text", s, e, "negative", f"negative {chunk_id} of {doc_id} · score {score}", n))
    return spans


def keychain(row: dict[str, Any], meta: dict[str, Any], texts: dict[str, str]) -> list[Span]:
    """The evidence and every link of every chain (the real one and the decoys), with hop and depth."""
    spans = []
    chain = meta.get("chain", {})
    for item in meta.get("evidence", []):
        if "char_span" in item:
            path = f"prompt.{item.get('message', 0)}.content"
            spans.append(span(path, *item["char_span"], "evidence", f"evidence {item['doc_id']}",
                              len(texts.get(path, ""))))
    for link in chain.get("links", []):
        if "char_span" in link:
            path = f"prompt.{link.get('message', 0)}.content"
            real = link["chain"] == 0  # chain 0 ends at the question; the others are decoys
            spans.append(span(path, *link["char_span"], "link" if real else "decoy",
                              f"{'chain' if real else 'decoy chain'} {link['chain']} · hop {link['hop'] + 1}",
                              len(texts.get(path, ""))))
    return spans


def documents(row: dict[str, Any], meta: dict[str, Any], texts: dict[str, str]) -> list[Span]:
    """Where each document of a multi-document context begins (LongMagpie's banners, WildLong's headers)."""
    ids = [str(i) for i in meta.get("documents") or []]
    if len(ids) < 2:
        return []
    banner = DOCUMENT_BANNER.strip()
    spans = []
    for path, text in texts.items():
        at, number = text.find(banner), 1
        while at >= 0:  # LongMagpie: documents joined by a banner line
            number += 1
            label = f"document {number}" + (f": {ids[number - 1]}" if number <= len(ids) else "")
            spans.append(span(path, at, at + len(banner), "boundary", label, len(text)))
            at = text.find(banner, at + len(banner))
        for match in HEADER.finditer(text):  # WildLong: "Document i:" headers
            number = int(match.group(1))
            label = f"document {number}" + (f": {ids[number - 1]}" if 0 < number <= len(ids) else "")
            spans.append(span(path, match.start(), match.end(), "boundary", label, len(text)))
    return spans


def longpo(row: dict[str, Any], meta: dict[str, Any], texts: dict[str, str]) -> list[Span]:
    """The short span (the chosen answer's whole context) inside the long prompt."""
    spans = []
    pairs = [(f"prompt.{i}.content", f"short_prompt.{i}.content") for i in range(len(row.get("prompt", [])))]
    for long_path, short_path in pairs:
        long, short = texts.get(long_path, ""), texts.get(short_path, "")
        if not long or not short or long == short:
            continue
        head = common_prefix(long, short)
        tail = common_prefix(long[::-1], short[::-1])
        chunk = short[head:len(short) - tail] if head + tail < len(short) else ""
        at = long.find(chunk, head) if chunk else -1
        if at >= 0:
            first, last = meta.get("chunk_span", [None, None])
            spans.append(span(long_path, at, at + len(chunk), "short-span",
                              f"short span · tokens {first}–{last} of {meta.get('document_tokens')}", len(long)))
    return spans


def verifiable(row: dict[str, Any], meta: dict[str, Any], texts: dict[str, str]) -> list[Span]:
    """The ground-truth answer where the document holds it."""
    answers = row.get("ground_truth") or []
    spans = []
    for path, text in texts.items():
        if path.startswith("prompt.") and answers and isinstance(answers[0], str) and answers[0]:
            at = text.find(answers[0])
            if at >= 0:
                spans.append(span(path, at, at + len(answers[0]), "answer", "answer", len(text)))
    return spans


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix.

    >>> common_prefix("abcd", "abx")
    2
    """
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


SPANS: dict[str, Callable[[dict[str, Any], dict[str, Any], dict[str, str]], list[Span]]] = {
    "untie_knots": untie_knots, "nextlong": nextlong, "keychain": keychain, "longmagpie": documents,
    "wildlong": documents, "longpo": longpo, "verifiable": verifiable,
}


def utf16(text: str, offsets: list[int]) -> list[int]:
    """Character offsets as UTF-16 code-unit offsets (characters beyond U+FFFF count two).

    >>> utf16("a😀b", [0, 1, 2, 3])
    [0, 1, 3, 4]
    """
    if text.isascii() or all(ord(c) <= 0xFFFF for c in text):
        return offsets
    wide = [0]
    for char in text:
        wide.append(wide[-1] + (2 if ord(char) > 0xFFFF else 1))
    return [wide[min(max(o, 0), len(text))] for o in offsets]


def laid_out(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row's fields and spans, as the page draws them (UTF-16 offsets), plus its meta and other columns."""
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    fields = text_fields(row)
    texts = {f["path"]: f["text"] for f in fields}
    method = str(meta.get("method", ""))
    spans = [s for s in SPANS.get(method, lambda *_: [])(row, meta, texts)
             if s["field"] in texts and 0 <= s["start"] < s["end"] <= len(texts[s["field"]])]
    order = {path: i for i, path in enumerate(texts)}
    spans.sort(key=lambda s: (order[s["field"]], s["start"], -s["end"]))  # the list reads in text order
    for s in spans:
        s["start"], s["end"] = utf16(texts[s["field"]], [s["start"], s["end"]])
    shown = {"messages", "prompt", "chosen", "rejected", "short_prompt", "text", "meta"}
    return {"kind": kind, "method": method, "fields": fields, "spans": spans, "meta": meta,
            "columns": {k: v for k, v in row.items() if k not in shown}}


def reject_laid_out(record: dict[str, Any]) -> dict[str, Any]:
    """A reject as the page draws it: reason, detail and the model's raw output, and its unit."""
    raw = record.get("raw")
    fields = [{"path": "raw", "group": "raw", "role": "raw output", "text": raw if isinstance(raw, str) else
               json.dumps(raw, ensure_ascii=False)}] if raw is not None else []
    return {"kind": "reject", "method": record.get("method") or "", "fields": fields, "spans": [],
            "meta": {k: v for k, v in record.items() if k != "raw"}, "columns": {}}
