"""The backend contract: `Request` in, `Completion` out, plus the model's tokenizer and chat template."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError
from lcsynth.registry import Registry
from lcsynth.text.chat import ChatTemplate
from lcsynth.text.tokens import Tokenizer

# Bump when the meaning of a request's fields changes, so old cache entries cannot match new requests.
REQUEST_HASH_VERSION = "v1"


@dataclass(frozen=True)
class Request:
    """One generation: chat `messages` or a raw `prompt`, with sampling settings."""

    messages: tuple[tuple[str, str], ...] | None = None
    prompt: str | None = None
    max_tokens: int = 512
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a Request has either messages or prompt, not both or neither")

    @classmethod
    def chat(cls, messages: list[dict[str, str]], **kwargs: Any) -> Request:
        """Build a chat request from OpenAI-style message dicts."""
        return cls(messages=tuple((m["role"], m["content"]) for m in messages), **kwargs)

    def message_dicts(self) -> list[dict[str, str]]:
        """The messages as OpenAI-style dicts."""
        return [{"role": role, "content": content} for role, content in self.messages or ()]

    def digest(self, model_id: str) -> str:
        """A stable hash of this request for `model_id`: the cache key and the id in rejects."""
        payload = {"model": model_id, **{f.name: getattr(self, f.name) for f in fields(self)}}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return f"{REQUEST_HASH_VERSION}:{hashlib.sha256(canonical.encode()).hexdigest()}"


@dataclass(frozen=True)
class Usage:
    """Token counts of one completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """What a backend returns: the text and why generation stopped ("stop" or "length")."""

    text: str
    finish_reason: str
    usage: Usage = Usage()


@runtime_checkable
class Backend(Protocol):
    """What every backend provides."""

    model_id: str
    tokenizer: Tokenizer
    chat_template: ChatTemplate
    context_length: int
    max_concurrency: int

    async def start(self) -> None:
        """Check the model is reachable before any work is planned (fail fast, in one line)."""
        ...

    async def complete(self, request: Request) -> Completion:
        """Generate one completion."""
        ...

    async def aclose(self) -> None:
        """Release the model or connections."""
        ...


def score_digest(model_id: str, tokens: list[int], start: int) -> str:
    """The cache key of a scoring call: log-probs of `tokens[start:]` given the tokens before them."""
    canonical = json.dumps({"model": model_id, "score": tokens, "start": start}, separators=(",", ":"))
    return f"{REQUEST_HASH_VERSION}:score:{hashlib.sha256(canonical.encode()).hexdigest()}"


def can_score(backend: Backend) -> bool:
    """Whether a backend returns prompt log-probs: `async score(tokens, start) -> list[float]`.

    Scoring is optional; llamacpp, vllm and openai (servers that echo prompt log-probs) provide it.
    """
    return callable(getattr(backend, "score", None))


BACKENDS = Registry("backend", "lcsynth.backends", {
    "llamacpp": "lcsynth.backends.llamacpp:LlamaCppBackend",
    "openai": "lcsynth.backends.openai_compat:OpenAIBackend",
    "vllm": "lcsynth.backends.vllm:VLLMBackend",
    "none": "lcsynth.backends.none:NoModelBackend",
})


def create_backend(spec: BackendSpec) -> Backend:
    """Build the backend a recipe names; outside packages add backends via the `lcsynth.backends` entry point."""
    return BACKENDS.load(spec.type, "backend.type").from_spec(spec)


@dataclass
class PlanningBackend:
    """A backend as a planner sees it: tokenizer, chat template, context length and model id; it never generates."""

    model_id: str
    tokenizer: Tokenizer
    chat_template: ChatTemplate
    context_length: int
    max_concurrency: int

    async def start(self) -> None:
        """Nothing to start."""

    async def complete(self, request: Request) -> Completion:
        """Refuse: planning never generates."""
        raise BackendError(f"{self.model_id}: this process only plans the run; replicas generate")

    async def aclose(self) -> None:
        """Nothing to release."""


def create_planning_backend(spec: BackendSpec) -> Backend:
    """The recipe's backend without its model: a backend class's `planning_view(spec)`, or the backend itself.

    Backends that load a model when built (llamacpp, vllm) provide `planning_view`; the others are cheap to build.
    """
    backend_class = BACKENDS.load(spec.type, "backend.type")
    view = getattr(backend_class, "planning_view", None)
    return view(spec) if view is not None else backend_class.from_spec(spec)
