"""Client-side pacing for endpoints with requests-per-minute or tokens-per-minute quotas."""

from __future__ import annotations

import asyncio
import time
from collections import deque


class MinuteRateLimiter:
    """Waits until a request of `tokens` fits in the last minute's request and token budgets.

    Token counts are estimates made before sending (prompt characters / 4 + max_tokens): quotas are
    enforced by the server anyway; this keeps a run from tripping them constantly.
    """

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self._sent: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.rpm is not None or self.tpm is not None

    def _delay(self, now: float, tokens: int) -> float:
        while self._sent and now - self._sent[0][0] >= 60:
            self._sent.popleft()
        delays = [0.0]
        if self.rpm is not None and len(self._sent) + 1 > self.rpm:
            delays.append(60 - (now - self._sent[0][0]))
        if self.tpm is not None:
            used = sum(t for _, t in self._sent)
            for stamp, spent in self._sent:  # wait until enough old spending leaves the window
                if used + tokens <= self.tpm:
                    break
                used -= spent
                delays.append(60 - (now - stamp))
        return max(delays)

    async def acquire(self, tokens: int) -> None:
        """Block until the request may be sent, then record it."""
        if not self.active:
            return
        async with self._lock:
            while (delay := self._delay(time.monotonic(), tokens)) > 0:
                await asyncio.sleep(delay)
            self._sent.append((time.monotonic(), tokens))
