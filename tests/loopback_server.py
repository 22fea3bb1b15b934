"""The base of the OpenAI-compatible test servers: listen on 127.0.0.1, in the test's loop or a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web


class LoopbackServer:
    """Serves `/v1/chat/completions`, `/v1/completions` and `/v1/models` on a free port of 127.0.0.1.

    Subclasses call `_listen` from their `__aenter__`; `start_in_thread()` serves from a daemon thread (for tests
    that drive a separate process) and `stop()` ends it.
    """

    async def _listen(self, completions: Any, models: Any, **runner_options: Any) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        app.router.add_post("/v1/completions", completions)
        app.router.add_get("/v1/models", models)
        self._runner = web.AppRunner(app, **runner_options)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    def start_in_thread(self):
        """Serve from a daemon thread; return self once the server listens."""
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.__aenter__())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(10), f"{type(self).__name__} did not start"
        return self

    def stop(self) -> None:
        """Close the server and its loop's thread."""
        asyncio.run_coroutine_threadsafe(self.__aexit__(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
