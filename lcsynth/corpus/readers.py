"""Corpus readers: each streams `Document`s from one kind of source without loading it whole."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lcsynth.config import CorpusSpec
from lcsynth.errors import ConfigError, InputError
from lcsynth.fastjson import loads


@dataclass(frozen=True, slots=True)
class Document:
    """One long document: a stable id, its text, and where it came from.

    `oversized` is the size in bytes of a document over `corpus.max_document_bytes`, which is passed over unread
    (its text is empty) and becomes a reject.
    """

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    oversized: int = 0


def _require_path(spec: CorpusSpec) -> Path:
    if not spec.path:
        raise ConfigError(f"corpus.path: a '{spec.type}' corpus needs a path")
    path = Path(spec.path)
    if not path.exists():
        raise InputError(f"corpus.path: {path} does not exist")
    return path


def _make_document(row: dict[str, Any], spec: CorpusSpec, where: str, fallback_id: str) -> Document:
    text = row.get(spec.text_field)
    if not isinstance(text, str):
        found = ", ".join(sorted(map(str, row))) or "none"
        raise InputError(f"{where}: no text field '{spec.text_field}' (fields: {found}); set corpus.text_field")
    raw_id = row.get(spec.id_field) if spec.id_field else None
    doc_id = str(raw_id) if raw_id is not None else fallback_id
    meta = {k: v for k, v in row.items() if k not in (spec.text_field, spec.id_field) and _is_plain(v)}
    meta["source"] = where.rsplit(":", 1)[0]
    return Document(doc_id, text, meta)


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def read_jsonl(spec: CorpusSpec) -> Iterator[Document]:
    """Stream a JSONL file (or every *.jsonl in a folder), one document per line.

    A line over `corpus.max_document_bytes` is passed over in blocks, never held whole, and yields an oversized
    document named by its file and line.
    """
    path = _require_path(spec)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        for number, line in jsonl_lines(file, spec.max_document_bytes):
            if isinstance(line, int):
                yield Document(f"{file.stem}:{number}", "", {"source": str(file)}, oversized=line)
                continue
            row = parse_jsonl_line(file, number, line)
            yield _make_document(row, spec, f"{file}:{number}", f"{file.stem}:{number}")


def jsonl_lines(file: Path, max_bytes: int | None = None) -> Iterator[tuple[int, str | int]]:
    """(line number, text) for each non-blank line, or (line number, size in bytes) for a line over `max_bytes`.

    Lines are read as bytes and decoded one at a time, so a line that is not UTF-8 is named by its number.
    """
    with file.open("rb") as handle:
        number = 0
        while raw := read_line(handle, max_bytes):
            number += 1
            if isinstance(raw, int):
                yield number, raw
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{file}:{number}: not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                                 "convert the file to UTF-8") from None
            del raw  # only the text is kept while the line is parsed
            if line.strip():
                yield number, line


def read_line(handle: IO[bytes], max_bytes: int | None, block: int = 1 << 20) -> bytes | int:
    """The next line (b"" at the end), or its size when it holds over `max_bytes` bytes.

    The line is read in blocks; once it is over the limit its blocks are no longer kept, so a line of any
    length costs at most `max_bytes` of memory.
    """
    if max_bytes is None:
        return handle.readline()
    pieces: list[bytes] = []
    size, ended = 0, False
    while not ended and (piece := handle.readline(block)):
        size += len(piece)
        ended = piece.endswith(b"\n")
        if size - ended > max_bytes:
            pieces.clear()
        else:
            pieces.append(piece)
    return size if size - ended > max_bytes else b"".join(pieces)


def parse_jsonl_line(file: Path, number: int, line: str) -> dict[str, Any]:
    """The JSON object on one line; anything else is a one-line error naming file and line."""
    try:
        row = loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{file}:{number}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise InputError(f"{file}:{number}: expected a JSON object per line")
    return row


def jsonl_objects(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a bad line is a one-line error naming file and line."""
    for number, line in jsonl_lines(file):
        assert isinstance(line, str)
        yield number, parse_jsonl_line(file, number, line)


def read_parquet(spec: CorpusSpec) -> Iterator[Document]:
    """Stream a Parquet file (or every *.parquet in a folder) in record batches."""
    import pyarrow.parquet as pq

    path = _require_path(spec)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    for file in files:
        try:
            parquet = pq.ParquetFile(file)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise InputError(f"{file}: not a readable Parquet file ({exc})") from None
        index = 0
        for batch in parquet.iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield _make_document(row, spec, f"{file}:{index}", f"{file.stem}:{index}")
                index += 1


def read_text_dir(spec: CorpusSpec) -> Iterator[Document]:
    """One document per .txt or .md file under a folder, in sorted path order."""
    path = _require_path(spec)
    if not path.is_dir():
        raise InputError(f"corpus.path: {path} is not a folder (a 'text_dir' corpus reads *.txt and *.md in it)")
    for file in sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md") and p.is_file()):
        rel = file.relative_to(path).as_posix()
        size = file.stat().st_size
        if spec.max_document_bytes is not None and size > spec.max_document_bytes:
            yield Document(rel, "", {"source": str(file)}, oversized=size)
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{file}: not UTF-8 text (byte {exc.start}); convert the file to UTF-8") from None
        yield Document(rel, text, {"source": str(file)})


def read_hf(spec: CorpusSpec) -> Iterator[Document]:
    """A Hugging Face `datasets` dataset: a folder saved with save_to_disk, or load_dataset arguments."""
    import datasets

    if spec.path and Path(spec.path).is_dir() and (Path(spec.path) / "dataset_info.json").exists():
        dataset = datasets.load_from_disk(spec.path)
    elif spec.hf_args:
        args = dict(spec.hf_args)
        args.setdefault("split", "train")
        args.setdefault("streaming", True)
        try:
            dataset = datasets.load_dataset(**args)
        except Exception as exc:  # datasets raises many error types for a bad source
            raise InputError(f"corpus.hf_args: load_dataset failed ({type(exc).__name__}: {exc})") from None
    else:
        raise ConfigError("corpus: an 'hf' corpus needs path (a save_to_disk folder) or hf_args")
    if isinstance(dataset, datasets.DatasetDict):
        raise ConfigError(f"corpus: choose a split, one of {', '.join(dataset)} (hf_args.split)")
    source = spec.path or str(spec.hf_args.get("path", "hf"))
    for index, row in enumerate(dataset):
        yield _make_document(row, spec, f"{source}:{index}", f"{Path(source).name}:{index}")


def read_demo(spec: CorpusSpec) -> Iterator[Document]:
    """The demo corpus: pydoc pages of the standard library (see `lcsynth.corpus.demo`)."""
    from lcsynth.corpus.demo import iter_demo_documents

    yield from iter_demo_documents()


READERS: dict[str, Callable[[CorpusSpec], Iterator[Document]]] = {
    "demo": read_demo,
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "text_dir": read_text_dir,
    "hf": read_hf,
}


def iter_documents(spec: CorpusSpec) -> Iterator[Document]:
    """Stream the corpus a spec names (filters such as `min_chars` are applied, and recorded, by the run)."""
    return READERS[spec.type](spec)
