"""The demo corpus: plain-text pydoc pages of standard-library modules, present on every machine."""

from __future__ import annotations

import importlib
import json
import pydoc
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from lcsynth.corpus.readers import Document

# A fixed list, in a fixed order, of modules whose import has no side effects and whose
# documentation is long enough to be worth a question. The list is the choice; pydoc writes the text.
DEMO_MODULES = (
    "argparse", "ast", "asyncio", "base64", "calendar", "collections", "configparser", "contextlib",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions", "functools", "gzip",
    "hashlib", "http.client", "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "logging",
    "mailbox", "math", "mimetypes", "operator", "os", "pathlib", "pickle", "queue", "random", "re",
    "secrets", "selectors", "shutil", "smtplib", "socket", "sqlite3", "ssl", "statistics", "struct",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time", "tokenize", "traceback",
    "types", "typing", "unittest", "urllib.parse", "uuid", "weakref", "xml.dom.minidom", "zipfile",
)

# pydoc prints the path of the module's source file: it is no documentation text,
# and the path would make the corpus differ between machines.
_FILE_SECTION = re.compile(r"\nFILE\n    .*?(?=\n\S|\Z)", re.S)
# The DATA section prints module globals as they are in this process: `os.environ` (which can hold secrets),
# logging's handlers, mimetypes' tables. That is process state, not documentation, and it must not leak.
_DATA_SECTION = re.compile(r"\nDATA\n    .*?(?=\n\S|\Z)", re.S)
# Default values such as `<object object at 0x7f20...>` print a memory address that changes every process.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def render_module(name: str) -> str:
    """Render one module's documentation as plain text, without machine paths or the process's own state."""
    module = importlib.import_module(name)
    text = pydoc.render_doc(module, title="Python Library Documentation: %s", renderer=pydoc.plaintext)
    return _ADDRESS.sub("", _DATA_SECTION.sub("", _FILE_SECTION.sub("", text))).strip() + "\n"


def iter_demo_documents(modules: tuple[str, ...] = DEMO_MODULES) -> Iterator[Document]:
    """Yield one document per module, in the fixed order of `modules`."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name in modules:
        try:
            text = render_module(name)
        except ImportError:  # a Python built without e.g. ssl or sqlite3
            continue
        yield Document(f"pydoc:{name}", text, {"source": "pydoc", "module": name, "python": version})


def write_demo_corpus(out_dir: str | Path) -> Path:
    """Write the demo corpus as `demo.jsonl` in `out_dir`; return the file's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for doc in iter_demo_documents():
            handle.write(json.dumps({"id": doc.id, "text": doc.text, **doc.meta}, ensure_ascii=False) + "\n")
    return path
