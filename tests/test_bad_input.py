"""The bad-input catalogue: each mistake gives one line on stderr naming the problem and a non-zero exit, and a run
that fails leaves the finished run it was replacing as it was. Inputs a run can live with (short or empty
documents, a prompt over the model's context, outputs that never validate) become rejects with their reason.

`lcsynth generate` runs in this process through the console entry (`lcsynth.cli.app.main`), against a loopback
OpenAI-compatible server (tests/fault_server.py, a fake). What needs a process of its own (a file-size limit,
peak memory) runs as a real subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fault_server import FaultServer
from qa_run import answer, doc_text, qa_recipe, read_jsonl, snapshot, write_corpus, write_recipe

from lcsynth.cli.app import main
from lcsynth.run.local import run_recipe

GOOD = [doc_text(i) for i in range(4)]


@dataclass
class Case:
    """One bad input: what the run is given, and the one line (a regex) and exit status it must end with."""

    line: str
    code: int = 2
    sections: dict = field(default_factory=dict)
    corpus: list[str] | bytes = field(default_factory=lambda: GOOD)
    server: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path, pytest.MonkeyPatch], Callable[[], object] | None] | None = None  # returns a cleanup
    check: Callable[[Path, FaultServer], None] | None = None


def lines_of(*texts: str) -> bytes:
    return "".join(t + "\n" for t in texts).encode()


def deep_schema(depth: int) -> str:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return json.dumps(schema)


def template_with(schema: str) -> str:
    return ("name: t/odd\nmethod: template\nvariables: {document: {type: string}}\n"
            "messages: [{role: user, content: '{{ document }}'}]\n"
            f"response_schema: {schema}\nparse: json\n")


def odd_template(schema: str, **params) -> dict:
    return {"files": {"qa_templates/odd.yaml": template_with(schema)},
            "sections": {"methods": [{"name": "template", "template": "t/odd", "row_template": "t/qa_row", **params}]}}


def rejects_are(reason: str, detail: str) -> Callable[[Path, FaultServer], None]:
    def check(run_dir: Path, server: FaultServer) -> None:
        rejects = read_jsonl(run_dir / "rejects.jsonl")
        assert rejects and all(r["reason"] == reason and re.search(detail, r["detail"]) for r in rejects), rejects
    return check


def make_unwritable(folder: Path) -> Callable[[], object]:
    """Make a folder unwritable even for root (the immutable flag), else by its mode; return the undoing."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root on a file system without chattr +i")
        return lambda: subprocess.run(["chattr", "-i", str(folder)])
    folder.chmod(0o555)
    return lambda: folder.chmod(0o755)


def one_short_longpo_document(run_dir: Path, server: FaultServer) -> None:
    rejects = read_jsonl(run_dir / "rejects.jsonl")
    assert [(r["doc_id"], r["reason"]) for r in rejects] == [("d0", "document_too_short"),
                                                             ("d1", "wrong_question_count")]
    # only d1 is asked for questions: twice (LongPO's `attempts`), each reply with none
    assert rejects[0]["detail"].endswith("not more than chunk_tokens 40") and server.requests == 2


def three_tries_each(run_dir: Path, server: FaultServer) -> None:
    assert server.requests == len(server.arrivals) == 3 * 3  # json_retries 2: three new seeds per unit, then a reject
    rejects_are("invalid_output", r"is a required property")(run_dir, server)


CASES = {
    "malformed JSONL line": Case(
        r"error: \S+corpus\.jsonl:3: not valid JSON \(Expecting property name .*\)",
        corpus=lines_of(*(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(GOOD[:2])), "{not json",
                        json.dumps({"id": "d3", "text": GOOD[3]}))),
    "file not UTF-8": Case(
        r"error: \S+corpus\.jsonl:2: not UTF-8 \(byte 0xe9 at column 26\); convert the file to UTF-8",
        corpus=lines_of(json.dumps({"id": "d0", "text": GOOD[0]})) + b'{"id": "d1", "text": "Caf\xe9 society."}\n'),
    "empty corpus file": Case(r"error: corpus: no documents in \S+corpus\.jsonl; nothing to do", corpus=b""),
    "only empty or whitespace documents": Case(
        r"error: the run produced no rows \(rejects: document_too_short 3\); see \S+rejects\.jsonl", code=3,
        corpus=["", "   ", "\n\t \n"], check=rejects_are("document_too_short", "^empty or only whitespace$")),
    "documents shorter than min_chars": Case(
        r"done: 4 sft, 1 rejects → \S+", code=0, corpus=[*GOOD, "Too short."], sections={"corpus": {"min_chars": 100}},
        check=rejects_are("document_too_short", "^10 characters$")),
    "document shorter than LongPO's chunk": Case(
        r"error: the run produced no rows \(rejects: document_too_short 1, wrong_question_count 1\); see \S+", code=3,
        corpus=["Tiny.", doc_text(1, repeat=20)], check=one_short_longpo_document,
        sections={"methods": [{"name": "longpo", "chunk_tokens": 40, "questions": 1}]}),
    "missing corpus path": Case(r"error: corpus\.path: nope\.jsonl does not exist",
                                sections={"corpus": {"path": "nope.jsonl"}}),
    "unknown method": Case(r"error: methods\.0\.name: unknown method 'magic'; known: keychain, .*",
                           sections={"methods": [{"name": "magic"}]}),
    "unknown template": Case(r"error: template 't/nope' not found; known: .*t/qa, t/qa_row, .*",
                             sections={"methods": [{"name": "template", "template": "t/nope",
                                                    "row_template": "t/qa_row"}]}),
    "unknown backend": Case(r"error: backend\.type: unknown backend 'nope'; known: llamacpp, none, openai, vllm.*",
                            sections={"backend": {"type": "nope"}}),
    "unknown tokenizer": Case(r"error: tokenizer 'missing/tok\.gguf' cannot be loaded: no such \.gguf file",
                              sections={"backend": {"tokenizer": "missing/tok.gguf"}}),
    "recipe value of the wrong type": Case(r"error: r\.yaml: backend\.max_retries: Input should be a valid integer.*",
                                           sections={"backend": {"max_retries": "lots"}}),
    "unknown key in a method": Case(r"error: methods\.0 \(template\): json_retrys: unknown key .*",
                                    sections={"methods": [{"name": "template", "template": "t/qa",
                                                           "row_template": "t/qa_row", "json_retrys": 1}]}),
    "output folder not writable": Case(
        r"error: output: cannot write in \S+/out \((Permission denied|Operation not permitted)\)",
        prepare=lambda folder, monkeypatch: make_unwritable(folder / "out")),
    "unreachable endpoint": Case(r"error: cannot reach http://127\.0\.0\.1:9/v1/ \(is the server running\?\)",
                                 sections={"backend": {"base_url": "http://127.0.0.1:9/v1"}}),
    "wrong model name": Case(r"error: backend\.model: 'nope' is not served by http://127\.0\.0\.1:\d+/v1/ "
                             r"\(it serves: fake\)", sections={"backend": {"model": "nope"}}),
    "API key variable not set": Case(r"error: backend\.api_key_env: environment variable LCSYNTH_UNSET_KEY is not "
                                     r"set \(export it before the run; keys never go in recipe files\)",
                                     sections={"backend": {"api_key_env": "LCSYNTH_UNSET_KEY"}},
                                     prepare=lambda folder, mp: mp.delenv("LCSYNTH_UNSET_KEY", raising=False)),
    "prompt longer than the model's context": Case(
        r"done: 2 sft, 1 rejects → \S+", code=0, corpus=[GOOD[0], doc_text(1, repeat=60), GOOD[2]],
        server={"max_prompt_chars": 1500},
        check=rejects_are("request_rejected", r"^HTTP 400: This model's maximum context length is exceeded")),
    "schema nested too deeply": Case(r"error: \S+deep\.json: the schema nests too deeply to be checked; flatten it",
                                     files={"qa_templates/deep.json": deep_schema(400),
                                            **odd_template("deep.json")["files"]},
                                     sections=odd_template("deep.json")["sections"]),
    "schema whose $ref loops": Case(
        r"error: \S+odd\.yaml: response_schema: the schema's \$ref leads back to itself without end",
        **odd_template('{"$defs": {"x": {"$ref": "#/$defs/x"}}, "$ref": "#/$defs/x"}')),
    "pattern that backtracks without end": Case(
        r"error: the run produced no rows \(rejects: invalid_output 1\); see \S+", code=3, corpus=GOOD[:1],
        server={"answer": lambda body: json.dumps({"question": "a" * 40 + "!", "answer": "x"})},
        check=rejects_are("invalid_output", r"took over 1 s \(the pattern backtracks too much"),
        **odd_template('{"type": "object", "properties": {"question": {"type": "string", "pattern": "^(a|a)+$"}}}',
                       json_retries=0)),
    "answers that never validate": Case(
        r"error: the run produced no rows \(rejects: invalid_output 3\); see \S+", code=3, corpus=GOOD[:3],
        server={"rates": {"schema_violation": 1.0}}, check=three_tries_each),
}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A finished run, copied into each case's output folder before the case runs."""
    folder = tmp_path_factory.mktemp("good")
    write_corpus(folder, GOOD)
    server = FaultServer(answer).start_in_thread()
    try:
        summary = asyncio.run(run_recipe(qa_recipe(folder, server.url), show_progress=False))
    finally:
        server.stop()
    assert summary.rows == {"sft": 4}
    return summary.run_dir


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """The console entry point in this process: exit status and stderr."""
    monkeypatch.setattr(sys, "argv", ["lcsynth", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code or 0, capsys.readouterr().err


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_gives_one_line_and_keeps_the_finished_run(case, tmp_path, monkeypatch, capsys, good_run):
    run_dir = tmp_path / "out" / "run"
    shutil.copytree(good_run, run_dir)
    before = snapshot(run_dir)
    options = dict(case.server)
    server = FaultServer(options.pop("answer", answer), **options).start_in_thread()
    try:
        if isinstance(case.corpus, bytes):
            (tmp_path / "corpus.jsonl").write_bytes(case.corpus)
        else:
            write_corpus(tmp_path, case.corpus)
        write_recipe(tmp_path, server.url, **case.sections)
        for name, text in case.files.items():
            (tmp_path / name).write_text(text)
        undo = case.prepare(tmp_path, monkeypatch) if case.prepare else None
        try:
            code, stderr = run_cli(monkeypatch, capsys, "generate", "r.yaml", "-q")
        finally:
            if undo is not None:
                undo()
    finally:
        server.stop()
    lines = stderr.strip().splitlines()
    assert code == case.code and len(lines) == 1 and re.fullmatch(case.line, lines[0]), stderr
    if code not in (0, 3):  # a failed run: the finished run is as it was, and nothing was left beside it
        assert snapshot(run_dir) == before and not (tmp_path / "out" / ".run.previous").exists()
    if case.check:
        case.check(run_dir, server)


# The child reports its own peak (VmHWM of its address space) when it exits: a parent's size does not count, as it
# would in wait4's ru_maxrss, which starts from the RSS of the process that forked it.
REPORT_PEAK = """
import atexit, re, sys
def report():
    with open("/proc/self/status") as status, open("peak.txt", "w") as out:
        out.write(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1))
atexit.register(report)
sys.argv = ["lcsynth", "generate", "r.yaml", "-q"]
from lcsynth.cli.app import main
main()
"""


def generate_in_child(folder: Path, timeout: float = 120, **popen) -> tuple[int, int, str]:
    """`lcsynth generate r.yaml -q` in a child process: exit status, its peak resident memory in bytes, stderr."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read a process's peak memory")
    result = subprocess.run([sys.executable, "-c", REPORT_PEAK], cwd=folder, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=timeout, **popen)
    return result.returncode, int((folder / "peak.txt").read_text()) * 1024, result.stderr


def write_enormous_line(path: Path, size: int) -> int:
    """A JSONL line of `size` text characters between two ordinary lines, written in blocks; its byte length."""
    block = "x" * (1 << 20)
    with path.open("w") as handle:
        handle.write(json.dumps({"id": "d0", "text": GOOD[0]}) + "\n")
        start = handle.tell()
        handle.write('{"id": "huge", "text": "')
        for _ in range(size // len(block)):
            handle.write(block)
        handle.write('"}\n')
        length = handle.tell() - start
        handle.write(json.dumps({"id": "d2", "text": GOOD[2]}) + "\n")
    return length


@pytest.mark.timeout(240)
def test_an_enormous_line_is_passed_over_in_blocks_and_rejected(tmp_path):
    server = FaultServer(answer).start_in_thread()
    try:
        write_recipe(tmp_path, server.url)
        write_corpus(tmp_path, [GOOD[0], GOOD[2]])
        code, baseline, stderr = generate_in_child(tmp_path)
        assert code == 0, stderr
        line = write_enormous_line(tmp_path / "corpus.jsonl", 100 << 20)
        code, peak, stderr = generate_in_child(tmp_path)
    finally:
        server.stop()
        (tmp_path / "corpus.jsonl").unlink()
    assert code == 0 and re.fullmatch(r"done: 2 sft, 1 rejects → \S+\n", stderr), stderr
    (reject,) = read_jsonl(tmp_path / "out" / "run" / "rejects.jsonl")
    assert (reject["doc_id"], reject["reason"]) == ("corpus:2", "document_too_large")
    assert reject["detail"] == f"{line} bytes > corpus.max_document_bytes {16 << 20}; passed over unread"
    growth = peak - baseline
    print(f"\nenormous line: {line / 2**20:.0f} MiB; peak RSS {baseline / 2**20:.0f} MiB without it, "
          f"{peak / 2**20:.0f} MiB with it (growth {growth / line:.1%} of the line)")
    assert growth < line // 4  # read in blocks, kept only up to the limit: never held whole, let alone twice


def limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child: writes past `limit` bytes fail with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("cache", "line"), [
    (False, r"error: output: writing \S+/out/run: File too large"),
    # with the cache on, the shard or the cache may reach the limit first (cache writes are batched)
    (True, r"error: (output: writing \S+/out/run: File too large|cache: cannot write \S+/out/cache\.sqlite "
           r"\((database or disk is full|disk I/O error)\))"),
])
def test_a_full_disk_while_writing_is_one_line_and_keeps_the_finished_run(tmp_path, good_run, cache, line):
    run_dir = tmp_path / "out" / "run"
    shutil.copytree(good_run, run_dir)
    before = snapshot(run_dir)
    server = FaultServer(answer).start_in_thread()
    try:
        write_corpus(tmp_path, [doc_text(i, repeat=150) for i in range(40)])  # about 5 KB a row
        write_recipe(tmp_path, server.url, cache={"enabled": cache})
        code, _, stderr = generate_in_child(tmp_path, preexec_fn=limit_file_size(64 << 10))
    finally:
        server.stop()
    assert code == 2 and re.fullmatch(line + "\n", stderr), stderr
    assert snapshot(run_dir) == before and not (tmp_path / "out" / ".run.previous").exists()


def test_a_cache_that_cannot_be_written_fails_the_unit_that_writes_next(tmp_path):
    from lcsynth.backends.base import Completion, Usage
    from lcsynth.backends.cache import RequestCache
    from lcsynth.errors import OutputError

    cache = RequestCache(tmp_path / "cache.sqlite")
    cache.db.execute("PRAGMA max_page_count = 8")  # sqlite's own limit: the next pages it needs are refused
    answer_text = "x" * 3000

    async def units_putting_answers():
        for i in range(40):
            cache.put(f"k{i}", "m", Completion(answer_text, "stop", Usage(1, 1)))
            await asyncio.sleep(0)  # the end-of-iteration flush runs here, and fails

    with pytest.raises(OutputError, match=r"^cache: cannot write \S+cache\.sqlite \(database or disk is full\)$"):
        asyncio.run(units_putting_answers())
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
