"""Named plugins: built-in "module:Class" strings plus those other packages register as entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from lcsynth.errors import ConfigError


class Registry:
    """Maps names to lazily imported classes; nothing is imported until it is used."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]) -> None:
        self.kind, self.group, self.builtins = kind, group, builtins

    def names(self) -> dict[str, str]:
        """Every known name and its "module:Class"; built-ins win over entry points of the same name."""
        found = dict(self.builtins)
        for entry in entry_points(group=self.group):
            found.setdefault(entry.name, entry.value)
        return found

    def load(self, name: str, where: str) -> Any:
        """Import the class registered as `name`; an unknown name is a ConfigError at `where`."""
        known = self.names()
        if name not in known:
            raise ConfigError(f"{where}: unknown {self.kind} '{name}'; known: {', '.join(sorted(known))}")
        module_name, _, class_name = known[name].partition(":")
        return getattr(importlib.import_module(module_name), class_name)
