"""vLLM in-process on local GPUs: continuous batching and prefix caching across all in-flight units."""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from typing import Any

from lcsynth.backends.base import Completion, PlanningBackend, Request, Usage
from lcsynth.backends.decoding import decoding_schema
from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError, ConfigError, MissingExtra, Reject
from lcsynth.text.chat import ChatTemplate, template_for_tokenizer
from lcsynth.text.tokens import HFTokenizer, load_tokenizer

# Engine settings lcsynth chooses unless the recipe's backend.options say otherwise.
ENGINE_DEFAULTS: dict[str, Any] = {
    "enable_prefix_caching": True,  # the units of one document share its long prefix
    "gpu_memory_utilization": 0.85,
    "tensor_parallel_size": 1,
}


def engine_args(spec: BackendSpec) -> dict[str, Any]:
    """AsyncEngineArgs keyword arguments for a recipe's backend section.

    >>> engine_args(BackendSpec(type="vllm", model="m", context_length=4096, options={"tensor_parallel_size": 2}))
    {'enable_prefix_caching': True, 'gpu_memory_utilization': 0.85, 'tensor_parallel_size': 2, 'model': 'm', \
'max_model_len': 4096, 'seed': 0}
    """
    if not spec.model:
        raise ConfigError("backend.model: the vllm backend needs a model (Hugging Face name or local folder)")
    args = {**ENGINE_DEFAULTS, **spec.options, "model": spec.model}
    if spec.context_length:
        args["max_model_len"] = spec.context_length
    args.setdefault("seed", 0)
    return args


def sampling_kwargs(request: Request) -> dict[str, Any]:
    """SamplingParams keyword arguments for a request (structured output added separately).

    >>> sampling_kwargs(Request(prompt="x", max_tokens=8, temperature=0.5, top_p=0.9, seed=3, stop=("END",)))
    {'max_tokens': 8, 'temperature': 0.5, 'top_p': 0.9, 'seed': 3, 'stop': ['END']}
    """
    return {"max_tokens": request.max_tokens, "temperature": request.temperature, "top_p": request.top_p,
            "seed": request.seed, "stop": list(request.stop) or None}


def prompt_encoder(tokenizer: HFTokenizer, remembered: int = 256) -> Callable[[str], list[int]]:
    """Token ids of a prompt text, the last `remembered` texts kept: the samples of a document send one long prompt.

    Encoding runs on the event loop, where a 4.7K-token prompt costs about 10 ms of CPU; LongMagpie's self-query
    prompt is the same for every sample of a document, so it is encoded once. Each call gets its own list.
    """
    @functools.lru_cache(maxsize=remembered)
    def ids(text: str) -> tuple[int, ...]:
        return tuple(tokenizer.encode(text))

    return lambda text: list(ids(text))


class VLLMBackend:
    """vLLM's async engine in this process; every unit's requests join one continuous batch."""

    def __init__(self, spec: BackendSpec) -> None:
        try:
            from vllm import AsyncEngineArgs
            from vllm.usage.usage_lib import UsageContext
        except ImportError:
            raise MissingExtra("vllm", "vllm", "the vllm backend") from None
        try:
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError:  # older releases
            from vllm import AsyncLLMEngine as AsyncLLM

        # A caller that already touched CUDA (a notebook, a test) cannot fork the engine process; spawn works always.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        args = engine_args(spec)
        self.tokenizer = load_tokenizer(spec.tokenizer or spec.model or "")
        if not isinstance(self.tokenizer, HFTokenizer):
            raise ConfigError("backend.tokenizer: the vllm backend needs the model's Hugging Face tokenizer")
        self.chat_template: ChatTemplate = template_for_tokenizer(self.tokenizer)
        self._encode = prompt_encoder(self.tokenizer)
        try:
            # LLM_CLASS: vLLM's scheduler defaults for offline batch work (on an H100, 1024 sequences and 16K
            # tokens a step), not those of an engine embedded in a server (128 sequences, 2K tokens).
            self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args), usage_context=UsageContext.LLM_CLASS)
        except Exception as exc:  # vLLM raises many types for a bad model, GPU or setting
            raise BackendError(f"vLLM could not start {spec.model}: {type(exc).__name__}: {exc}") from None
        self.model_id = f"vllm:{spec.model}"
        self.context_length = spec.context_length or self.engine.model_config.max_model_len
        self.max_concurrency = spec.max_concurrency
        self._ids = itertools.count()

    @classmethod
    def from_spec(cls, spec: BackendSpec) -> VLLMBackend:
        """Build from a recipe's backend section; `options` go to vLLM's AsyncEngineArgs."""
        return cls(spec)

    @classmethod
    def planning_view(cls, spec: BackendSpec) -> PlanningBackend:
        """Model id, tokenizer and chat template without starting the engine; the context must be given."""
        if not spec.context_length:
            raise ConfigError("backend.context_length: give the vllm backend's max_model_len when the run is "
                              "planned apart from the engine (--executor ray)")
        tokenizer = load_tokenizer(spec.tokenizer or spec.model or "")
        return PlanningBackend(f"vllm:{spec.model}", tokenizer, template_for_tokenizer(tokenizer),
                               spec.context_length, spec.max_concurrency)

    async def start(self) -> None:
        """The engine started in the constructor; nothing more to check."""

    def _sampling(self, request: Request) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        extra: dict[str, Any] = {"output_kind": RequestOutputKind.FINAL_ONLY}
        if request.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            extra["structured_outputs"] = StructuredOutputsParams(json=decoding_schema(request.json_schema))
        return SamplingParams(**sampling_kwargs(request), **extra)

    def prompt_ids(self, request: Request) -> list[int]:
        """Token ids of the prompt, chat markup rendered by the model's own template."""
        text = request.prompt
        if text is None:
            text = self.chat_template.render(request.message_dicts(), add_generation_prompt=True)
        return self._encode(text)

    async def complete(self, request: Request) -> Completion:
        """Submit to the engine and wait for the finished output."""
        ids = self.prompt_ids(request)
        if len(ids) >= self.context_length:
            raise Reject("context_overflow", f"{len(ids)} prompt tokens >= max_model_len {self.context_length}")
        final = None
        async for output in self.engine.generate({"prompt_token_ids": ids}, self._sampling(request),
                                                 f"lcsynth-{next(self._ids)}"):
            final = output
        if final is None or not final.outputs:
            raise Reject("backend_error", "vLLM returned no output")
        out = final.outputs[0]
        return Completion(out.text, out.finish_reason or "stop", Usage(len(ids), len(out.token_ids)))

    async def score(self, tokens: list[int], start: int) -> list[float]:
        """Log-probs of `tokens[start:]` given the tokens before them (vLLM's prompt log-probs)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        final = None
        async for output in self.engine.generate({"prompt_token_ids": tokens}, params, f"lcsynth-{next(self._ids)}"):
            final = output
        if final is None or final.prompt_logprobs is None:
            raise Reject("backend_error", "vLLM returned no prompt log-probs")
        return [final.prompt_logprobs[i][tokens[i]].logprob for i in range(start, len(tokens))]

    async def aclose(self) -> None:
        """Shut the engine down explicitly (its worker processes otherwise outlive the run)."""
        self.engine.shutdown()
