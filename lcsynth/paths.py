"""Where the package's data folders (templates, schemas, recipes) live, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the built-in folder `name` (templates, schemas or recipes).

    A wheel carries them under `lcsynth/_data/`; a source checkout keeps them at the repository root.
    """
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"lcsynth's built-in '{name}' folder is missing from {_PACKAGE}")
