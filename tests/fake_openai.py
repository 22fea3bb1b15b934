"""A scripted OpenAI-compatible server on 127.0.0.1 for fault and concurrency tests (a fake, bounded).

Each request takes the next action from `script` (then `default`): ("ok", text), ("status", code, headers),
("raw", body bytes) or ("hang", seconds). It records arrivals and the most requests it ever held at once.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from loopback_server import LoopbackServer


class FakeOpenAI(LoopbackServer):
    def __init__(self, script=(), default=("ok", "fine"), delay: float = 0.0, responder=None, scorer=None):
        self.script = list(script)
        self.scorer = scorer  # token ids -> log-prob of each after the first, for echo + logprobs requests
        self.responder = responder  # body -> text, used for ("ok", None) actions
        self.default = default
        self.delay = delay
        self.arrivals = 0
        self.active = 0
        self.max_active = 0
        self.bodies: list[dict] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            body = await request.json()
            self.bodies.append(body)
            action = self.script.pop(0) if self.script else self.default
            await asyncio.sleep(self.delay)
            if action[0] == "status":
                return web.json_response({"error": {"message": f"injected {action[1]}"}}, status=action[1],
                                         headers=action[2] if len(action) > 2 else None)
            if action[0] == "raw":  # a 200 reply whose body is exactly these bytes (garbled on purpose)
                return web.Response(body=action[1], content_type="application/json")
            if action[0] == "hang":
                await asyncio.sleep(action[1])
            text = action[1] if action[0] == "ok" else "late"
            if text is None:
                text = self.responder(body)
            usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            if request.path.endswith("/chat/completions"):
                choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                kind = "chat.completion"
            else:
                choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
                if body.get("echo") and self.scorer is not None:
                    choice["logprobs"] = {"tokens": [str(t) for t in body["prompt"]] + ["x"], "top_logprobs": None,
                                          "token_logprobs": [None, *self.scorer(body["prompt"]), -1.0],
                                          "text_offset": list(range(len(body["prompt"]) + 1))}
                kind = "text_completion"
            return web.json_response({"id": "x", "object": kind, "created": 0, "model": body.get("model"),
                                      "choices": [choice], "usage": usage})
        finally:
            self.active -= 1

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "created": 0,
                                                              "owned_by": "test"}]})

    async def __aenter__(self) -> FakeOpenAI:
        await self._listen(self._handle, self._models)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"
