"""Keeping credentials out of what lcsynth writes and prints: rejects, manifests, dataset cards, error messages."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"
# Key names that hold credentials (`api_key_env` names a variable and stays; `max_tokens` is a count).
_SECRET_KEY = re.compile(r"(?:^|_)(?:api_?key|token|secret|password|passwd|auth|authorization|credentials?)$", re.I)
_SECRET_VALUE = re.compile(r"\b(?:hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,})")
_URL_USER = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
_SECRET_ENV = re.compile(r"(?:^|_)(?:TOKEN|API_?KEY|SECRET|SECRET_KEY|PASSWORD|ACCESS_KEY)(?:$|_)")

# Variables that recipes named as holding a key: their values are secrets whatever the variables are called.
_KEY_VARIABLES: set[str] = set()


def secret_values(extra_env: Iterable[str] = (), hub_token: str | None = None) -> dict[str, str]:
    """Values that must never be published, named by where they came from.

    They are credential-like environment variables (`HF_TOKEN`, `*_API_KEY`, …), the variables named in
    `extra_env`, and the Hub token in use.
    """
    found = {f"${name}": value for name, value in os.environ.items()
             if (_SECRET_ENV.search(name.upper()) or name in extra_env) and len(value) >= 8}
    if hub_token and len(hub_token) >= 8:
        found["the Hub token"] = hub_token
    return found


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of `value` with credentials replaced by `<redacted>`.

    Values under credential-like keys, token-shaped strings (`hf_…`, `sk-…`), user:password in URLs and every
    occurrence of the given secret strings go.

    >>> redact({"api_key_env": "OPENAI_API_KEY", "hf_args": {"token": "abc"}, "url": "https://u:p@host/v1"})
    {'api_key_env': 'OPENAI_API_KEY', 'hf_args': {'token': '<redacted>'}, 'url': 'https://<redacted>@host/v1'}
    """
    secrets = [s for s in secrets if s]
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "")
                else redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        value = _SECRET_VALUE.sub(REDACTED, value)
        return _URL_USER.sub(lambda m: m.group(1) + REDACTED + "@", value)
    return value


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
