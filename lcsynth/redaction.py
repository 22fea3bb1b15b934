"""Keeping credentials out of what lcsynth writes and prints: rejects, manifests, error messages."""

from __future__ import annotations

from typing import Any

from lcsynth.out.card import redact, secret_values

# Variables that recipes named as holding a key: their values are secrets whatever the variables are called.
_KEY_VARIABLES: set[str] = set()


def watch_variable(name: str | None) -> None:
    """Treat the value of the environment variable `name` as a secret from now on."""
    if name:
        _KEY_VARIABLES.add(name)


def known_secrets() -> list[str]:
    """The secret values in this process's environment (credential-like variables and the watched ones)."""
    return list(secret_values(_KEY_VARIABLES).values())


def scrub(value: Any) -> Any:
    """`value` (text, or a structure of it) without secret values, token-shaped strings or passwords in URLs.

    >>> scrub("GET https://user:pw@example.com/v1 with sk-abcdefghijklmnopqrstuv")
    'GET https://<redacted>@example.com/v1 with <redacted>'
    """
    return redact(value, known_secrets())
