"""The experiment's text, from Debian's documentation packages: a training corpus and a separate haystack.

- training corpus: the Linux kernel's documentation (`linux-doc-6.1`, reStructuredText sources, English pages:
  its `translations/` are left out) and Python's (`python3.11-doc`, the same), one JSONL document per page;
- haystack for the probes: Perl's manual pages (`perl-doc`, POD), prose paragraphs only.

`python -m bench quality corpus --out DIR` downloads the three packages with `apt-get download` (the package
registry) and writes `DIR/train.jsonl.xz` and `DIR/haystack.jsonl.xz`; the GPU machine gets these files carried.
"""

from __future__ import annotations

import io
import json
import lzma
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

PACKAGES = {"linux-doc-6.1": "train", "python3.11-doc": "train", "perl-doc": "haystack"}
SKIP_POD = ("perlapi", "perltoc", "perluniprops", "perlintern", "perlmodlib", "perldiag", "perl5")
"""Perl pages that are tables or indexes rather than prose (perl5*: release notes, very repetitive)."""
MIN_CHARS = 2000


def download(folder: Path) -> dict[str, Path]:
    """Each package's .deb in `folder` (fetched by `apt-get download` unless already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    found = {}
    for name in PACKAGES:
        debs = sorted(folder.glob(f"{name}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", name], cwd=folder, check=True, capture_output=True)
            debs = sorted(folder.glob(f"{name}_*.deb"))
        found[name] = debs[-1]
    return found


def members(deb: Path) -> Iterator[tuple[str, str]]:
    """(path, text) of every file in the package's data archive (read with dpkg-deb, nothing unpacked)."""
    tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            if member.isfile():
                data = tar.extractfile(member)
                if data is not None:
                    yield member.name, data.read().decode("utf-8", errors="replace")


def rst_text(text: str) -> str:
    """reStructuredText with directive lines, comment blocks and heading underlines dropped."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if re.fullmatch(r"([=\-~^*#+`'\".:_])\1{3,}", stripped) or stripped.startswith(".. "):
            continue
        lines.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def pod_prose(text: str) -> str:
    """The prose paragraphs of a POD page: commands, verbatim (indented) blocks and index entries dropped."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        if not para.strip() or para.startswith(("=", " ", "\t")):
            continue
        para = re.sub(r"X<[^>]*>", "", para)
        for _ in range(3):  # formatting codes nest: B<C<x>> -> x
            para = re.sub(r"[A-Z]<<+\s*(.*?)\s*>+>", r"\1", para)
            para = re.sub(r"[A-Z]<([^<>]*)>", lambda m: m.group(1).split("|")[0], para)
        para = " ".join(para.split())
        if len(para) > 80:
            out.append(para)
    return "\n\n".join(out)


def documents(package: str, deb: Path) -> Iterator[dict[str, str]]:
    """The package's documents as JSONL records (id, text, source)."""
    for path, text in members(deb):
        if package == "perl-doc":
            if not path.endswith(".pod") or Path(path).stem.startswith(SKIP_POD):
                continue
            body = pod_prose(text)
        elif path.endswith(".rst.txt") and "/_sources/" in path and "/_sources/translations/" not in path:
            body = rst_text(text)
        else:
            continue
        if len(body) >= MIN_CHARS:
            yield {"id": f"{package}:{path.split('/_sources/')[-1]}", "text": body, "source": package}


def build(out: Path, debs: Path) -> dict[str, dict[str, int]]:
    """Write `out/train.jsonl.xz` and `out/haystack.jsonl.xz`; return documents and characters per file."""
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, dict[str, int]] = {}
    files = {role: lzma.open(out / f"{role}.jsonl.xz", "wt", encoding="utf-8") for role in set(PACKAGES.values())}
    try:
        for package, deb in download(debs).items():
            role = PACKAGES[package]
            for doc in documents(package, deb):
                files[role].write(json.dumps(doc, ensure_ascii=False) + "\n")
                entry = stats.setdefault(package, {"documents": 0, "chars": 0})
                entry["documents"] += 1
                entry["chars"] += len(doc["text"])
    finally:
        for f in files.values():
            f.close()
    return stats


def read(path: Path) -> Iterator[dict[str, str]]:
    """Records of a `.jsonl.xz` (or plain `.jsonl`) file."""
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
