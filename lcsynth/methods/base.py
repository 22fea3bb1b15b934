"""The method contract, the context methods talk to, and the method registry."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ValidationError

from lcsynth.backends.base import Backend, Completion, Request, Usage, score_digest
from lcsynth.backends.cache import RequestCache
from lcsynth.config import MethodSpec, format_validation_error
from lcsynth.corpus.readers import Document
from lcsynth.counters import RunCounters
from lcsynth.errors import ConfigError, Reject
from lcsynth.prompts.schemas import validation_error
from lcsynth.prompts.templates import PromptTemplate, RenderedPrompt, find_templates, get_template, template_helpers
from lcsynth.registry import Registry

if TYPE_CHECKING:
    from lcsynth.corpus.store import TokenStore


@dataclass
class Record:
    """One output row of a given kind (sft, dpo, grpo, pretrain) plus its provenance."""

    kind: str
    row: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """The row as written: the kind's fields, then `meta`."""
        return {**self.row, "meta": self.meta}


class MethodContext:
    """Everything a method may touch: the backend (through `complete`), templates and schemas."""

    def __init__(self, backend: Backend, template_dirs: list[str], counters: RunCounters,
                 cache: RequestCache | None = None) -> None:
        self.backend = backend
        self.counters = counters
        self.cache = cache
        self._template_dirs = template_dirs
        self._templates: dict[str, PromptTemplate] = {}
        self._helpers = template_helpers(backend.tokenizer)  # made once: units render thousands of times
        self.last_request_hash: str | None = None
        self.usage: RunCounters | None = None
        self.store: TokenStore | None = None  # the corpus as token-counted segments, for methods that need it
        self.document_limit: int | None = None  # tokens a prompt's documents may take (set by the run)
        self.seed = 0  # the recipe's seed (set by the run), for run-level draws such as an item order

    def fork(self) -> MethodContext:
        """A context for one unit: shares everything but its usage counts and last request hash."""
        unit_ctx = object.__new__(type(self))  # a shallow copy, without copy.copy's generic protocol
        unit_ctx.__dict__.update(self.__dict__)
        unit_ctx.last_request_hash = None
        unit_ctx.usage = RunCounters()
        return unit_ctx

    @property
    def model_id(self) -> str:
        """The backend's model id, recorded in every row's meta."""
        return self.backend.model_id

    def template(self, name: str) -> PromptTemplate:
        """A prompt template by name (user folders override built-ins)."""
        if not self._templates:  # one pass over the search path finds them all
            self._templates.update(find_templates(self._template_dirs))
        if name not in self._templates:
            self._templates[name] = get_template(name, self._template_dirs)  # or one line naming the known ones
        return self._templates[name]

    def render(self, template: PromptTemplate, **variables: Any) -> RenderedPrompt:
        """Render a template with the backend's tokenizer behind its token-aware helpers."""
        return template.render_with(self._helpers, variables)

    async def complete(self, request: Request) -> Completion:
        """Answer from the cache, or send the request to the backend and cache the answer."""
        key = self.last_request_hash = request.digest(self.model_id)
        completion = self.cache.get(key) if self.cache is not None else None
        cached = completion is not None
        if completion is None:
            self.counters.in_flight += 1
            try:
                completion = await self.backend.complete(request)
            finally:
                self.counters.in_flight -= 1
            if self.cache is not None:
                self.cache.put(key, self.model_id, completion)
        self._count(completion.usage, cached)
        return completion

    def _count(self, usage: Usage, cached: bool) -> None:
        counts = RunCounters(requests=1, cache_hits=int(cached), prompt_tokens=usage.prompt_tokens,
                             completion_tokens=usage.completion_tokens)
        self.counters.add(counts)
        if self.usage is not None:
            self.usage.add(counts)

    async def score(self, tokens: list[int], start: int) -> list[float]:
        """Log-probs of `tokens[start:]` given the tokens before them, from the cache or the backend."""
        key = self.last_request_hash = score_digest(self.model_id, tokens, start)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            logprobs = json.loads(cached.text)
        else:
            self.counters.in_flight += 1
            try:
                logprobs = await self.backend.score(tokens, start)  # type: ignore[attr-defined]
            finally:
                self.counters.in_flight -= 1
            if self.cache is not None:
                self.cache.put(key, self.model_id, Completion(json.dumps(logprobs), "logprobs", Usage(len(tokens))))
        self._count(Usage(len(tokens)), cached is not None)
        return logprobs

    @staticmethod
    def check(instance: Any, schema: str | dict[str, Any], reason: str, raw: str | None = None) -> None:
        """Validate a parsed LLM output against a schema; a failure becomes a Reject with `reason`."""
        problem = validation_error(instance, schema)
        if problem:
            name = schema if isinstance(schema, str) else schema.get("$id", "response_schema")
            raise Reject(reason, f"{name}: {problem}", raw=raw)


class Method:
    """A way of turning one document into records. Subclasses set `name`, `kind`, `Params`, `run`."""

    name: ClassVar[str]
    kind: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    @property
    def samples_per_document(self) -> int:
        """How many units each document yields."""
        return int(getattr(self.params, "samples_per_document", 1))

    needs_store: bool = False  # True: the run opens the corpus token store (ctx.store) first

    def reserved_tokens(self) -> int:
        """Context tokens the method needs besides the document (generation, prompt markup)."""
        return 0

    def sources(self, ctx: MethodContext) -> Iterator[Document] | None:
        """Documents this method's units run on instead of the corpus (e.g. QA items), or None for the corpus."""
        return None

    async def prepare(self, ctx: MethodContext, run_dir: Path) -> list[tuple[dict[str, Any], Reject]]:
        """Run-level work before any unit (e.g. WildLong's attribute graph); returns what it rejected.

        A resumed run calls it again, so it must pick up what it saved in `run_dir` rather than redo it.
        """
        return []

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Produce records for sample number `sample` of `doc`, or raise Reject."""
        raise NotImplementedError


def unit_rng(seed: int, method: str, doc_id: str, sample: int, attempt: int = 0) -> random.Random:
    """The rng of one unit, derived from (seed, method, document, sample) alone, never from run order.

    A retried unit (`--retry-rejects`) gets attempt 1, 2, …, and with it new seeds.
    """
    key = f"{seed}\x1f{method}\x1f{doc_id}\x1f{sample}" + (f"\x1f{attempt}" if attempt else "")
    key = key.encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


METHODS = Registry("method", "lcsynth.methods", {
    "longmagpie": "lcsynth.methods.longmagpie:LongMagpieMethod",
    "template": "lcsynth.methods.template:TemplateMethod",
    "keychain": "lcsynth.methods.keychain:KeyChainMethod",
    "longpo": "lcsynth.methods.longpo:LongPOMethod",
    "untie_knots": "lcsynth.methods.untie_knots:UntieKnotsMethod",
    "nextlong": "lcsynth.methods.nextlong:NExtLongMethod",
    "verifiable": "lcsynth.methods.verifiable:VerifiableMethod",
    "wildlong": "lcsynth.methods.wildlong:WildLongMethod",
})


def known_methods() -> dict[str, str]:
    """Built-in methods plus any registered under the `lcsynth.methods` entry point."""
    return METHODS.names()


def create_method(spec: MethodSpec, position: int) -> Method:
    """Build the method a recipe entry names, validating its parameters."""
    method_class: type[Method] = METHODS.load(spec.name, f"methods.{position}.name")
    try:
        params = method_class.Params.model_validate(spec.params)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"methods.{position} ({spec.name})")) from None
    return method_class(params)
