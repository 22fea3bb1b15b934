"""The demo corpus: plain-text pydoc pages of standard-library modules, present on every machine.

The pages are rendered by a fresh interpreter in isolated mode (`python -I -S`), not in the calling process:
packages a process has imported may patch the standard library (one replaces `inspect.getfile`), and pydoc
would print the patch, so the same recipe would read other text after, say, torch was imported.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
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


# Run by a clean interpreter: each module's pydoc page, or null where the module cannot be imported; ASCII JSON.
_RENDER = """
import importlib, json, pydoc, sys
pages = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except ImportError:
        pages[name] = None
        continue
    pages[name] = pydoc.render_doc(module, title="Python Library Documentation: %s", renderer=pydoc.plaintext)
sys.stdout.write(json.dumps(pages))
"""


@functools.lru_cache(maxsize=16)
def _pages(modules: tuple[str, ...]) -> dict[str, str | None]:
    """The raw pydoc pages of `modules`, rendered by a fresh isolated interpreter (once per process)."""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", _RENDER, *modules], capture_output=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"rendering the demo corpus failed: {done.stderr.decode(errors='replace')[-400:]}")
    return json.loads(done.stdout)


def _cleaned(text: str) -> str:
    """A page without machine paths or the process's own state."""
    return _ADDRESS.sub("", _DATA_SECTION.sub("", _FILE_SECTION.sub("", text))).strip() + "\n"


def render_module(name: str) -> str:
    """Render one module's documentation as plain text, without machine paths or the process's own state."""
    page = _pages((name,))[name]
    if page is None:
        raise ImportError(f"the standard library here has no module {name}")
    return _cleaned(page)


def iter_demo_documents(modules: tuple[str, ...] = DEMO_MODULES) -> Iterator[Document]:
    """Yield one document per module, in the fixed order of `modules` (one a Python lacks, e.g. ssl, is skipped)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    pages = _pages(tuple(modules))
    for name in modules:
        if pages.get(name) is not None:
            yield Document(f"pydoc:{name}", _cleaned(pages[name]), {"source": "pydoc", "module": name,
                                                                      "python": version})


def write_demo_corpus(out_dir: str | Path) -> Path:
    """Write the demo corpus as `demo.jsonl` in `out_dir`; return the file's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for doc in iter_demo_documents():
            handle.write(json.dumps({"id": doc.id, "text": doc.text, **doc.meta}, ensure_ascii=False) + "\n")
    return path
