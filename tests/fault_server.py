"""An OpenAI-compatible server on 127.0.0.1 that injects faults at configured rates (a fake, bounded, seeded).

Each arriving request draws its fault from a generator seeded by (seed, request body, how often that body
arrived before), so a run meets the same faults whatever the order of arrivals. Faults:

- transport: `retry_after` (429 with Retry-After), `rate_limited` (429 without), `status_500`, `status_502`,
  `status_503`, `reset` (headers and half the body, then the connection is aborted), `hang` (no answer before
  `hang_seconds`, longer than the client's timeout), `truncated_body` (200 whose JSON body is cut short);
- content (a 200 the client accepts): `invalid_json` (the message content is cut JSON), `schema_violation`
  (JSON of the wrong shape), `empty` (empty content), `length` (finish_reason "length").

Healthy answers come from `answer(body) -> str`. The server records every body, the faults it injected, the
arrivals per body, the Authorization headers, and, after each Retry-After, how long the client waited before
the same request came back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable

from aiohttp import web
from loopback_server import LoopbackServer

TRANSPORT_FAULTS = ("retry_after", "rate_limited", "status_500", "status_502", "status_503", "reset", "hang",
                    "truncated_body")
CONTENT_FAULTS = ("invalid_json", "schema_violation", "empty", "length")
FAULTS = TRANSPORT_FAULTS + CONTENT_FAULTS
STATUS = {"rate_limited": 429, "status_500": 500, "status_502": 502, "status_503": 503}


def body_key(body: dict) -> str:
    """A request's identity: the hash of its canonical JSON (a retry sends the same body)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class FaultServer(LoopbackServer):
    def __init__(self, answer: Callable[[dict], str], rates: dict[str, float] | None = None, seed: int = 0,
                 retry_after: int = 1, hang_seconds: float = 2.0, api_key: str | None = None,
                 models: tuple[str, ...] = ("fake",), max_prompt_chars: int | None = None,
                 echo_key: bool = False, open_models: bool = False) -> None:
        unknown = set(rates or {}) - set(FAULTS)
        assert not unknown, f"unknown faults {unknown}"
        assert sum((rates or {}).values()) <= 1.0
        self.answer, self.rates, self.seed = answer, dict(rates or {}), seed
        self.retry_after, self.hang_seconds = retry_after, hang_seconds
        self.api_key, self.models, self.max_prompt_chars = api_key, models, max_prompt_chars
        self.echo_key = echo_key  # a careless server that quotes the client's key back in error messages
        self.open_models = open_models  # /models answers without a key (the key is checked on completions only)
        self.bodies: list[dict] = []
        self.arrivals: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.auth_headers: set[str] = set()
        self.answered: set[str] = set()  # bodies that got a whole 200 reply in time (what a client may cache)
        self.retry_gaps: list[tuple[float, float]] = []  # (Retry-After sent, seconds until the same body came back)
        self._told_to_wait: dict[str, tuple[float, float]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        return sum(self.arrivals.values())

    @property
    def retries_seen(self) -> int:
        """Arrivals beyond the first of each distinct body."""
        return self.requests - len(self.arrivals)

    def draw(self, key: str, attempt: int) -> str | None:
        point = random.Random(f"{self.seed}:{key}:{attempt}").random()
        total = 0.0
        for fault, rate in self.rates.items():
            total += rate
            if point < total:
                return fault
        return None

    def _refused(self, request: web.Request, body: dict, check_key: bool = True) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        self.auth_headers.add(auth)
        if check_key and self.api_key is not None and auth != f"Bearer {self.api_key}":
            quoted = f": {auth.removeprefix('Bearer ')}" if self.echo_key else ""
            return web.json_response({"error": {"message": f"Incorrect API key provided{quoted}"}}, status=401)
        if body.get("model") not in self.models:
            return web.json_response({"error": {"message": f"The model `{body.get('model')}` does not exist"}},
                                     status=404)
        prompt = body.get("prompt") or "".join(m["content"] for m in body.get("messages", []))
        if self.max_prompt_chars is not None and len(prompt) > self.max_prompt_chars:
            quoted = f" (request by {auth})" if self.echo_key else ""
            return web.json_response({"error": {"message": f"This model's maximum context length is exceeded: "
                                                           f"{len(prompt)} characters{quoted}"}}, status=400)
        return None

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        key = body_key(body)
        if key in self._told_to_wait:
            asked, at = self._told_to_wait.pop(key)
            self.retry_gaps.append((asked, time.monotonic() - at))
        attempt = self.arrivals[key]
        self.arrivals[key] += 1
        self.bodies.append(body)
        refused = self._refused(request, body)
        if refused is not None:
            return refused
        fault = self.draw(key, attempt)
        if fault is not None:
            self.injected[fault] += 1
        if fault == "retry_after":
            self._told_to_wait[key] = (self.retry_after, time.monotonic())
            return web.json_response({"error": {"message": "slow down"}}, status=429,
                                     headers={"Retry-After": str(self.retry_after)})
        if fault in STATUS:
            return web.json_response({"error": {"message": f"injected {fault}"}}, status=STATUS[fault])
        if fault == "hang":
            await asyncio.sleep(self.hang_seconds)
        payload = self._payload(request.path, body, fault)
        if fault == "truncated_body":
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        if fault == "reset":
            return await self._reset(request, payload)
        if fault != "hang":
            self.answered.add(key)
        return web.Response(body=payload, content_type="application/json")

    def _payload(self, path: str, body: dict, fault: str | None) -> bytes:
        text, finish = self.answer(body), "stop"
        if fault == "invalid_json":
            text = text[: max(1, len(text) // 2)]
        elif fault == "schema_violation":
            text = json.dumps({"unexpected": 42})
        elif fault == "empty":
            text = ""
        elif fault == "length":
            text, finish = text[: len(text) // 3], "length"
        usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
        if path.endswith("/chat/completions"):
            choice = {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "finish_reason": finish, "text": text, "logprobs": None}
            kind = "text_completion"
        return json.dumps({"id": "x", "object": kind, "created": 0, "model": body.get("model"),
                           "choices": [choice], "usage": usage}).encode()

    @staticmethod
    async def _reset(request: web.Request, payload: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(payload)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        request.transport.abort()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._refused(request, {"model": self.models[0]}, check_key=not self.open_models)
        if refused is not None:
            return refused
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                              "owned_by": "test"} for m in self.models]})

    async def __aenter__(self) -> FaultServer:
        await self._listen(self._complete, self._models, handler_cancellation=True, access_log=None)
        return self

