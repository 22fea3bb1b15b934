"""Any OpenAI-compatible endpoint (vLLM serve, SGLang, llama.cpp server, TGI, OpenAI) through the `openai` client."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from lcsynth.backends.base import Completion, Request, Usage
from lcsynth.backends.limits import MinuteRateLimiter
from lcsynth.chat import ChatTemplate, context_length_from_metadata, template_for_tokenizer
from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError, ConfigError, Reject
from lcsynth.tokens import Tokenizer, load_tokenizer

RETRY_STATUS = {408, 409, 429}
MAX_RETRY_AFTER = 120.0


class MalformedResponse(Exception):
    """A 200 whose body is no completion (cut short, not JSON, no choices): a transport fault, worth a retry."""


def is_retryable(exc: BaseException) -> bool:
    """Timeouts, dropped connections, malformed bodies, 429, 408, 409 and 5xx are worth another try; not other 4xx."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, MalformedResponse)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's Retry-After (seconds or an HTTP date), capped; None when it sent none."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        seconds = parsed.timestamp() - time.time() if parsed else 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class RetryAfterOrBackoff:
    """tenacity wait: honour Retry-After when the server sends it, else exponential backoff with jitter."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self._backoff = wait_exponential(multiplier=base, max=cap) + wait_random(0, base)

    def __call__(self, retry_state: Any) -> float:
        """Seconds to wait before the next attempt."""
        hinted = retry_after_seconds(retry_state.outcome.exception() if retry_state.outcome else None)
        return hinted if hinted is not None else self._backoff(retry_state)


class OpenAIBackend:
    """Chat requests go to /chat/completions, raw prompts to /completions; both retried and rate limited."""

    def __init__(self, spec: BackendSpec) -> None:
        import openai

        if not spec.model:
            raise ConfigError("backend.model: the openai backend needs the served model's name")
        if not spec.tokenizer:
            raise ConfigError("backend.tokenizer: the openai backend needs the model's tokenizer to count tokens "
                              "(a Hugging Face name or folder, or a .gguf path)")
        self.spec = spec
        self.model_id = f"openai:{spec.model}"
        self.tokenizer: Tokenizer = load_tokenizer(spec.tokenizer)
        self.chat_template: ChatTemplate = template_for_tokenizer(self.tokenizer)
        self.context_length = spec.context_length or context_length_from_metadata(
            getattr(self.tokenizer, "metadata", {}) or {}) or 0
        if not self.context_length:
            raise ConfigError("backend.context_length: say how many tokens the served model accepts")
        self.max_concurrency = spec.max_concurrency
        self.retries = 0
        self._limiter = MinuteRateLimiter(spec.requests_per_minute, spec.tokens_per_minute)
        self._slots: asyncio.Semaphore | None = None
        self.client = openai.AsyncOpenAI(
            base_url=spec.base_url, api_key=self._api_key(spec), timeout=spec.timeout, max_retries=0,
            http_client=openai.DefaultAioHttpClient(timeout=spec.timeout),
        )

    @staticmethod
    def _api_key(spec: BackendSpec) -> str:
        env = spec.api_key_env or ("OPENAI_API_KEY" if not spec.base_url else None)
        if env is None:
            return "no-key"  # local servers accept any key
        key = os.environ.get(env)
        if not key:
            raise ConfigError(f"backend.api_key_env: environment variable {env} is not set "
                              "(export it before the run; keys never go in recipe files)")
        return key

    @classmethod
    def from_spec(cls, spec: BackendSpec) -> OpenAIBackend:
        """Build from a recipe's backend section."""
        return cls(spec)

    async def start(self) -> None:
        """Check once that the endpoint answers and serves the model, so a typo fails in one line."""
        import openai

        try:
            served = [m.id async for m in self.client.models.list()]
        except openai.APIConnectionError:
            raise BackendError(f"cannot reach {self.client.base_url} (is the server running?)") from None
        except openai.AuthenticationError:
            raise BackendError(f"{self.client.base_url} refused the API key (401)") from None
        except openai.APIStatusError as exc:
            if exc.status_code == 404:
                return  # some servers have no /models; requests will tell
            raise BackendError(f"{self.client.base_url}/models answered {exc.status_code}") from None
        if served and self.spec.model not in served:
            raise BackendError(f"backend.model: '{self.spec.model}' is not served by {self.client.base_url} "
                               f"(it serves: {', '.join(served[:10])})")

    def request_body(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body of a request, as sent (and as written to batch files)."""
        return openai_body(request, self.spec.model or "", self.spec.structured_output, self.spec.options)

    async def _send(self, request: Request) -> Completion:
        path, body = self.request_body(request)
        known = {k: body.pop(k) for k in list(body) if k in _SDK_ARGUMENTS}
        try:
            if path == "/v1/completions":
                response = await self.client.completions.create(**known, extra_body=body or None)
                choice, text = response.choices[0], response.choices[0].text
            else:
                response = await self.client.chat.completions.create(**known, extra_body=body or None)
                choice = response.choices[0]
                text = choice.message.content or ""
        except (json.JSONDecodeError, LookupError, TypeError, AttributeError) as exc:  # body cut short, no choices
            raise MalformedResponse(f"{type(exc).__name__}: {exc}") from None
        usage = response.usage
        return Completion(text, choice.finish_reason or "stop",
                          Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage())

    def _count_retry(self, retry_state: Any) -> None:
        self.retries += 1

    async def complete(self, request: Request) -> Completion:
        """Send with at most `max_concurrency` in flight, retrying transient failures; give up as a Reject."""
        text = request.prompt or "".join(c for _, c in request.messages or ())
        return await self._call(self._send, request, tokens=len(text) // 4 + request.max_tokens)

    async def score(self, tokens: list[int], start: int) -> list[float]:
        """Log-probs of `tokens[start:]` given the tokens before them: /completions with echo and logprobs.

        vLLM, SGLang and TGI answer this; servers that do not return prompt log-probs fail in one line.
        """
        return await self._call(self._send_score, tokens, start, tokens=len(tokens))

    async def _send_score(self, tokens: list[int], start: int) -> list[float]:
        response = await self.client.completions.create(model=self.spec.model or "", prompt=tokens, max_tokens=1,
                                                        temperature=0.0, echo=True, logprobs=0)
        logprobs = response.choices[0].logprobs if response.choices else None
        values = logprobs.token_logprobs if logprobs is not None else None
        if not values or len(values) < len(tokens) or any(v is None for v in values[start:len(tokens)]):
            raise BackendError(f"{self.client.base_url} returned no prompt log-probs for echo=true, logprobs=0; "
                               "the context_gain filter needs a server that does (vLLM, SGLang, TGI)")
        return [float(v) for v in values[start:len(tokens)]]

    async def _call(self, send: Any, *args: Any, tokens: int) -> Any:
        """Run `send(*args)` under the concurrency and rate limits with retries; map failures to errors."""
        import openai

        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        async with self._slots:
            await self._limiter.acquire(tokens)
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.spec.max_retries + 1),
                wait=RetryAfterOrBackoff(self.spec.retry_backoff, self.spec.retry_backoff_max),
                retry=retry_if_exception(is_retryable), before_sleep=self._count_retry, reraise=True,
            )
            try:
                return await retrying(send, *args)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                raise BackendError(f"{self.client.base_url} answered {exc.status_code}: {_message(exc)}") from None
            except openai.APIStatusError as exc:
                reason = "backend_error" if is_retryable(exc) else "request_rejected"
                raise Reject(reason, f"HTTP {exc.status_code}: {_message(exc)}") from None
            except (openai.APITimeoutError, openai.APIConnectionError, MalformedResponse) as exc:
                raise Reject("backend_error", f"{type(exc).__name__} after {self.spec.max_retries} retries") from None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.close()


_SDK_ARGUMENTS = {"model", "messages", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop"}


def openai_body(request: Request, model: str, structured_output: str, options: dict[str, Any]) -> tuple[str, dict]:
    """Endpoint path and flat JSON body for an OpenAI-compatible server.

    >>> openai_body(Request(prompt="Hi", max_tokens=4, seed=1), "m", "vllm", {})
    ('/v1/completions', {'model': 'm', 'max_tokens': 4, 'temperature': 0.8, 'top_p': 0.95, 'seed': 1, 'prompt': 'Hi'})
    """
    body: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens, "temperature": request.temperature,
                            "top_p": request.top_p, "seed": request.seed, **options}
    if request.stop:
        body["stop"] = list(request.stop)
    chat = request.prompt is None
    body.update({"messages": request.message_dicts()} if chat else {"prompt": request.prompt})
    schema = request.json_schema
    if schema is not None and structured_output == "vllm":
        body["structured_outputs"] = {"json": schema}
    elif schema is not None and structured_output == "json_object":
        body["response_format"] = {"type": "json_object", "schema": schema}
    elif schema is not None and structured_output == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    return ("/v1/chat/completions" if chat else "/v1/completions"), body


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]
