"""Verifiable QA pairs read off the demo corpus by code: "what is the signature of function f?".

Each pydoc page lists functions as an indented signature line followed by its docstring; the paragraph
is the evidence and the signature is the answer. Only functions whose name appears in one module are
kept, so no distractor page can hold a second answer. Functions pydoc shows as `f(...)` (no signature known),
and those of one parameter anybody would guess (`x`, `self`, `obj`, `args`), are left out: their answer is all
but given by the question, so a policy could earn the reward without reading the context.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator

from lcsynth.corpus.readers import Document

_ENTRY = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*)\((?P<params>[^()\n]{1,120})\)\n(?P<doc>(?:        .+\n)+)", re.M)


_GUESSABLE = frozenset({"", "...", "self", "obj", "object", "args", "kwargs", "value", "arg"})


def guessable_parameters(params: str) -> bool:
    """Whether a parameter list is one a guesser would write unseen: none, `...`, or one short or stock name.

    >>> [guessable_parameters(p) for p in ("x, /", "...", "self", "path, mode='r'", "tp")]
    [True, True, True, False, False]
    """
    names = [p.split("=", 1)[0].strip().lstrip("*") for p in params.split(",")]
    names = [n for n in names if n not in ("", "/")]
    return len(names) <= 1 and (not names or len(names[0]) <= 1 or names[0] in _GUESSABLE)


def function_entries(doc: Document) -> Iterator[tuple[str, str, str]]:
    """(name, signature, paragraph) for each documented function of a pydoc page."""
    functions = doc.text.split("\nFUNCTIONS\n", 1)
    if len(functions) < 2:
        return
    section = re.split(r"\n[A-Z][A-Z ]+\n", functions[1], maxsplit=1)[0] + "\n"
    for match in _ENTRY.finditer(section):
        if not match.group("name").startswith("_") and not guessable_parameters(match.group("params")):
            yield match.group("name"), f"{match.group('name')}({match.group('params')})", match.group(0).rstrip()


def demo_qa(docs: Iterable[Document]) -> Iterator[Document]:
    """QA items (as documents: text = evidence; meta = question, answers, source) from pydoc pages."""
    docs = list(docs)
    mentions = Counter(name for doc in docs for name in set(re.findall(r"\b([a-z_][a-z0-9_]*)\(", doc.text)))
    for doc in docs:
        for name, signature, paragraph in function_entries(doc):
            if mentions[name] != 1:
                continue
            module = doc.meta.get("module") or doc.id.split(":", 1)[-1].split("#", 1)[0]
            question = f"What is the full signature of the function `{name}` of the `{module}` module?"
            yield Document(f"qa:{module}.{name}", paragraph,
                           {"question": question, "answers": [signature], "source_doc": doc.id})
