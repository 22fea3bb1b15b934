"""Any OpenAI-compatible endpoint (vLLM serve, SGLang, llama.cpp server, TGI, OpenAI) through the `openai` client."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from lcsynth.backends.base import Completion, PlanningBackend, Request, Usage
from lcsynth.backends.decoding import decoding_schema
from lcsynth.backends.discovery import default_model, served_models, served_tokenizer
from lcsynth.backends.http1 import HttpProtocolError
from lcsynth.backends.limits import MinuteRateLimiter
from lcsynth.backends.transport import (
    PostClient,
    choose_route,
    fault_text,
    open_client,
    sdk_route_options,
    shown_proxy,
)
from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError, ConfigError, Reject
from lcsynth.fastjson import dumps_wire, loads
from lcsynth.text.chat import context_length_from_metadata, template_for_tokenizer
from lcsynth.text.tokens import Tokenizer, load_tokenizer
from lcsynth.version import __version__

RETRY_STATUS = {408, 409, 429}
MAX_RETRY_AFTER = 120.0
STOP_STATUS = {401: "refused the API key", 403: "refused access", 404: "does not know this path or model"}


class EndpointStatus(Exception):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, status_code: int, headers: Any, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code, self.headers, self.message = status_code, headers, message


class EndpointFault(Exception):
    """No usable answer arrived: the connection failed or dropped, timed out, or the reply was not JSON."""


def is_retryable(exc: BaseException) -> bool:
    """Timeouts, dropped connections, garbled replies, 429, 408, 409 and 5xx are worth another try."""
    import openai

    if isinstance(exc, (EndpointFault, openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(exc, (EndpointStatus, openai.APIStatusError)):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's Retry-After (seconds or an HTTP date), capped; None when it sent none."""
    headers = getattr(exc, "headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = response.headers if response is not None else None
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = parsed.timestamp() - time.time() if parsed else 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class RetryAfterOrBackoff:
    """tenacity wait: honour Retry-After when the server sends it, else exponential backoff with jitter.

    `offset` shifts the attempt count, for retries that continue after a first attempt made elsewhere.
    """

    def __init__(self, base: float = 0.5, cap: float = 30.0, offset: int = 0) -> None:
        self.base, self.cap, self.offset = base, cap, offset

    def seconds(self, exc: BaseException | None, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based) that raised `exc`."""
        hinted = retry_after_seconds(exc)
        if hinted is not None:
            return hinted
        return min(self.cap, self.base * 2 ** (attempt - 1)) + random.uniform(0, self.base)

    def __call__(self, retry_state: Any) -> float:
        """Seconds to wait before the next attempt."""
        outcome = retry_state.outcome.exception() if retry_state.outcome else None
        return self.seconds(outcome, retry_state.attempt_number + self.offset)


def _headers(spec: BackendSpec) -> dict[str, str]:
    """The Authorization header for the calls that ask the server about itself."""
    return {"Authorization": f"Bearer {OpenAIBackend._api_key(spec)}", "User-Agent": f"lcsynth/{__version__}"}


def resolved_spec(spec: BackendSpec) -> tuple[BackendSpec, list[dict[str, Any]]]:
    """`spec` with `model` taken from the server when left out, and the server's `/models` entries (when asked)."""
    if spec.model and spec.tokenizer:
        return spec, []
    if not spec.base_url:
        missing = "backend.model" if not spec.model else "backend.tokenizer"
        raise ConfigError(f"{missing}: set it (only a server given by backend.base_url can be asked for it)")
    models = served_models(spec.base_url, _headers(spec))
    if not spec.model:
        spec = spec.model_copy(update={"model": default_model(spec.base_url, models)})
    return spec, models or []


class OpenAIBackend:
    """Chat requests go to /chat/completions, raw prompts to /completions; both retried and rate limited.

    Generation requests to a server on this machine are posted by a small HTTP/1.1 client (`http1.py`,
    kept-alive connections): the `openai` SDK's, and even aiohttp's, per-request work costs more CPU than
    everything else lcsynth does per request. Requests to any other server go through aiohttp with the
    environment's proxies (`transport.py` has the rule). The SDK still serves the rare calls (`/models` at
    start, prompt log-probs for scoring), on the same route.
    """

    def __init__(self, spec: BackendSpec) -> None:
        import openai

        view = self.planning_view(spec)
        self.spec = spec = spec.model_copy(update={"model": view.model_id.removeprefix("openai:")})
        self.model_id, self.tokenizer, self.chat_template = view.model_id, view.tokenizer, view.chat_template
        self.context_length, self.max_concurrency = view.context_length, view.max_concurrency
        self.retries = 0
        self._limiter = MinuteRateLimiter(spec.requests_per_minute, spec.tokens_per_minute)
        self._slots: asyncio.Semaphore | None = None
        self._wait = RetryAfterOrBackoff(spec.retry_backoff, spec.retry_backoff_max)
        api_key = self._api_key(spec)
        sdk_base = spec.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.client = openai.AsyncOpenAI(
            base_url=spec.base_url, api_key=api_key, timeout=spec.timeout, max_retries=0,
            http_client=openai.DefaultAioHttpClient(timeout=spec.timeout, **sdk_route_options(sdk_base)),
        )
        self._base = str(self.client.base_url).rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                         "Accept": "application/json", "User-Agent": f"lcsynth/{__version__}"}
        for header, variable in (("OpenAI-Organization", "OPENAI_ORG_ID"), ("OpenAI-Project", "OPENAI_PROJECT_ID")):
            if os.environ.get(variable):
                self._headers[header] = os.environ[variable]
        self._http: PostClient | None = None

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

    @staticmethod
    def planning_view(spec: BackendSpec) -> PlanningBackend:
        """Model id, tokenizer, chat template and context length, with no client.

        A `backend.model` or `backend.tokenizer` left out is asked of the server (`discovery.py`).
        """
        spec, models = resolved_spec(spec)
        tokenizer: Tokenizer = (load_tokenizer(spec.tokenizer) if spec.tokenizer else
                                served_tokenizer(spec.base_url or "", spec.model or "", models, _headers(spec)))
        served_context = next((m.get("max_model_len") for m in models if m["id"] == spec.model), None)
        context = (spec.context_length or context_length_from_metadata(getattr(tokenizer, "metadata", {}) or {})
                   or served_context)
        if not context:
            raise ConfigError("backend.context_length: say how many tokens the served model accepts")
        return PlanningBackend(f"openai:{spec.model}", tokenizer, template_for_tokenizer(tokenizer), context,
                               spec.max_concurrency)

    async def start(self) -> None:
        """Check once that the endpoint answers and serves the model, so a typo fails in one line."""
        import openai

        proxy = choose_route(self._base).proxy
        through = f" through the proxy {shown_proxy(proxy)}" if proxy else ""
        try:
            served = [m.id async for m in self.client.models.list()]
        except openai.APIConnectionError:
            running = "are the server and the proxy running?" if proxy else "is the server running?"
            raise BackendError(f"cannot reach {self.client.base_url}{through} ({running})") from None
        except openai.AuthenticationError:
            raise BackendError(f"{self.client.base_url} refused the API key (401)") from None
        except openai.APIStatusError as exc:
            if exc.status_code == 404:
                return  # some servers have no /models; requests will tell
            raise BackendError(f"{self.client.base_url}/models answered {exc.status_code}{through}") from None
        if served and self.spec.model not in served:
            raise BackendError(f"backend.model: '{self.spec.model}' is not served by {self.client.base_url} "
                               f"(it serves: {', '.join(served[:10])})")

    def request_body(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body of a request, as sent (and as written to batch files)."""
        return openai_body(request, self.spec.model or "", self.spec.structured_output, self.spec.options)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` as JSON to the endpoint and return the decoded reply; failures as Endpoint* errors."""
        if self._http is None:
            self._http = open_client(self._base, self._headers, self.spec.timeout)
        try:
            status, headers, raw = await self._http.post(path.removeprefix("/v1"), dumps_wire(body))
        except asyncio.TimeoutError:
            raise EndpointFault(f"no answer within backend.timeout={self.spec.timeout:g}s") from None
        except (OSError, HttpProtocolError) as exc:
            raise EndpointFault(fault_text(exc)) from None
        if status >= 400:
            raise EndpointStatus(status, headers, _reply_message(raw))
        try:
            reply = loads(raw)
            choice = reply["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointFault(f"the reply is not a completion: {raw[:120]!r}") from None
        if not isinstance(choice, dict):
            raise EndpointFault(f"the reply is not a completion: {raw[:120]!r}")
        return reply

    async def _send(self, request: Request) -> Completion:
        path, body = self.request_body(request)
        reply = await self._post(path, body)
        choice = reply["choices"][0]
        if path == "/v1/completions":
            text = choice.get("text") or ""
        else:
            text = (choice.get("message") or {}).get("content") or ""
        usage = reply.get("usage") or {}
        return Completion(text, choice.get("finish_reason") or "stop",
                          Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0))

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

    def _count_retry(self, retry_state: Any) -> None:
        self.retries += 1

    async def _call(self, send: Any, *args: Any, tokens: int) -> Any:
        """Run `send(*args)` under the concurrency and rate limits with retries; map failures to errors.

        The first attempt runs without tenacity (most requests need no other); a transient failure
        hands the remaining attempts to it.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        async with self._slots:
            await self._limiter.acquire(tokens)
            try:
                return await send(*args)
            except Exception as exc:  # noqa: BLE001 - sorted out below
                if not is_retryable(exc) or self.spec.max_retries == 0:
                    raise self._failure(exc) from None
                first = exc
            self.retries += 1
            await asyncio.sleep(self._wait.seconds(first, 1))
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.spec.max_retries),
                wait=RetryAfterOrBackoff(self.spec.retry_backoff, self.spec.retry_backoff_max, offset=1),
                retry=retry_if_exception(is_retryable), before_sleep=self._count_retry, reraise=True,
            )
            try:
                return await retrying(send, *args)
            except Exception as exc:  # noqa: BLE001 - sorted out by _failure
                raise self._failure(exc) from None

    def _failure(self, exc: Exception) -> Exception:
        """What a failed request becomes: BackendError stops the run, Reject drops the unit with its reason."""
        import openai

        retries = f" after {self.spec.max_retries} retries" if is_retryable(exc) else ""
        if isinstance(exc, (EndpointStatus, openai.APIStatusError)):
            message = exc.message if isinstance(exc, EndpointStatus) else _message(exc)
            if exc.status_code in STOP_STATUS:
                return BackendError(f"{self._base} answered {exc.status_code}: {message}")
            reason = "backend_error" if is_retryable(exc) else "request_rejected"
            return Reject(reason, f"HTTP {exc.status_code}{retries}: {message}")
        if isinstance(exc, EndpointFault):
            return Reject("backend_error", f"{exc}{retries}")
        if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
            return Reject("backend_error", f"{type(exc).__name__}{retries}")
        return exc

    async def aclose(self) -> None:
        """Close the HTTP session and the SDK client."""
        if self._http is not None:
            await self._http.close()
        await self.client.close()


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
    schema = None if request.json_schema is None else decoding_schema(request.json_schema)
    if schema is not None and structured_output == "vllm":
        body["structured_outputs"] = {"json": schema}
    elif schema is not None and structured_output == "json_object":
        body["response_format"] = {"type": "json_object", "schema": schema}
    elif schema is not None and structured_output == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    return ("/v1/chat/completions" if chat else "/v1/completions"), body


def _reply_message(raw: bytes) -> str:
    """The error message in an error reply's body (OpenAI's `{"error": {"message": ...}}` or plain text)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", errors="replace").strip() or "(empty reply)"
    inner = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(inner, dict) and inner.get("message"):
        return str(inner["message"])[:300]
    return str(inner)[:300]


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]
