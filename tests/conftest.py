"""Shared fixtures. `ScriptedBackend` is a fake for method logic; tests marked `model` use the real one."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable

import pytest
from processes import alive, command_line, descendants

from lcsynth.backends.base import Completion, Request, Usage
from lcsynth.backends.llamacpp import bundled_gguf
from lcsynth.text.chat import ChatTemplate, template_from_metadata
from lcsynth.text.tokens import LlamaCppTokenizer

# Helpers that live as long as the test process by design, not processes a test started.
LONG_LIVED = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


@pytest.fixture(scope="session")
def smol_tokenizer() -> LlamaCppTokenizer:
    """The bundled SmolLM2 vocabulary (vocab only: no weights are loaded)."""
    return LlamaCppTokenizer.from_gguf(str(bundled_gguf()))


@pytest.fixture(scope="session")
def smol_template(smol_tokenizer) -> ChatTemplate:
    """SmolLM2's own chat template, read from the GGUF metadata."""
    return template_from_metadata(smol_tokenizer.metadata)


class ScriptedBackend:
    """A fake backend for unit tests of method and pipeline logic (not a model).

    `reply(request)` decides each completion; every request is kept in `history`. Real tokenizer and
    chat template, so prompt construction is the same as with the real model.
    """

    max_concurrency = 64
    context_length = 8192
    model_id = "scripted"

    def __init__(self, tokenizer, template, reply: Callable[[Request], Completion], jitter: float = 0.0):
        self.tokenizer, self.chat_template, self.reply = tokenizer, template, reply
        self.history: list[Request] = []
        self._jitter = random.Random(0) if jitter else None
        self._jitter_max = jitter
        self.closed = False

    async def complete(self, request: Request) -> Completion:
        self.history.append(request)
        if self._jitter:
            await asyncio.sleep(self._jitter.random() * self._jitter_max)
        return self.reply(request)

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True


def text(reply: str, finish: str = "stop") -> Completion:
    return Completion(reply, finish, Usage(10, len(reply.split())))


@pytest.fixture
def scripted(smol_tokenizer, smol_template):
    """Factory: scripted(reply_fn, jitter=0.0) -> ScriptedBackend."""

    def make(reply: Callable[[Request], Completion], jitter: float = 0.0) -> ScriptedBackend:
        return ScriptedBackend(smol_tokenizer, smol_template, reply, jitter)

    return make


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test runs in its own folder with no user template path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LCSYNTH_TEMPLATES", raising=False)
    monkeypatch.delenv("LCSYNTH_DEBUG", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind():
    """After the last test, no process the tests started may still run: survivors are ended and fail the run."""
    yield
    left = {pid: command_line(pid) for pid in descendants(os.getpid()) if alive(pid)}
    left = {pid: line for pid, line in left.items() if not any(name in line for name in LONG_LIVED)}
    if not left:
        return
    for pid in left:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    pytest.fail("processes left running by the tests (ended now): "
                + "; ".join(f"{pid}: {line[:160]}" for pid, line in left.items()), pytrace=False)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it ended meanwhile
