"""Running an async loopback test server (one with `__aenter__`/`__aexit__`) from a background thread."""

from __future__ import annotations

import asyncio
import threading


class ServesInThread:
    """For tests that drive a separate process: `start_in_thread()` serves on its own loop; `stop()` ends it."""

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
