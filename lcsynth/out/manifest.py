"""The run manifest: what was asked, what came out, with which software. Deterministic for a given run."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lcsynth.config import Recipe
from lcsynth.counters import RunCounters, cost_of
from lcsynth.out.export import row_lengths
from lcsynth.out.report import length_summary
from lcsynth.out.sink import RunWriter
from lcsynth.redaction import scrub
from lcsynth.version import __version__

_VERSIONED = ("llama-cpp-python", "openai", "datasets", "jsonschema", "pydantic", "vllm")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the output."""
    found = {"lcsynth": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def build_manifest(recipe: Recipe, model_id: str, stats: dict[str, int], counters: RunCounters, units: int,
                   writer: RunWriter, files: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to know what a run produced and to reproduce it (no wall-clock values)."""
    cost = cost_of(counters, recipe.backend.price)
    return {
        "recipe": scrub(recipe.model_dump(mode="json")),  # credentials in options or URLs never reach the file
        "model": model_id,
        "seed": recipe.seed,
        "counts": {
            **{k: v for k, v in stats.items() if k != "document_tokens"},
            "units": units,
            "rows": dict(sorted(writer.rows.items())),
            "rejects": dict(sorted(writer.rejects.items())),
        },
        "tokens": {
            "documents": stats["document_tokens"],
            "prompt": counters.prompt_tokens,
            "completion": counters.completion_tokens,
            "requests": counters.requests,
        },
        "lengths": run_lengths(writer.run_dir, sorted(writer.rows)),
        "cost": round(cost, 6) if cost is not None else None,
        "files": files,
        "versions": package_versions(),
    }


def run_lengths(run_dir: Path, kinds: list[str]) -> dict[str, dict[str, int]]:
    """Per kind, the spread of the token counts its rows recorded (kinds whose rows record none are left out)."""
    lengths = {kind: row_lengths(run_dir, kind) for kind in kinds}
    return {kind: length_summary(values) for kind, values in lengths.items() if values}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    tmp = path.with_suffix(path.suffix + ".partial")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
