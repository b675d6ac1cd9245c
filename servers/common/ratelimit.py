"""Client-side rate limiting: sliding-window limiters shared by every call of one server."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

import anyio


class SlidingWindowLimiter:
    """At most `max_calls` in any `period` seconds, plus a cooldown set after a 429."""

    def __init__(self, max_calls: int, period: float) -> None:
        self.max_calls = max_calls
        self.period = period
        self._stamps: deque[float] = deque()
        self._not_before = 0.0
        self._lock: anyio.Lock | None = None

    def defer(self, seconds: float) -> None:
        """Hold every caller of this limiter back for `seconds` from now."""
        self._not_before = max(self._not_before, time.monotonic() + seconds)

    def delay(self) -> float:
        """Seconds until the next call may go out (0 if it may go now)."""
        now = time.monotonic()
        while self._stamps and now - self._stamps[0] >= self.period:
            self._stamps.popleft()
        wait = self._not_before - now
        if len(self._stamps) >= self.max_calls:
            wait = max(wait, self._stamps[0] + self.period - now)
        return max(0.0, wait)

    async def acquire(self) -> None:
        """Wait for a slot and take it."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            while (wait := self.delay()) > 0:
                await anyio.sleep(wait)
            self._stamps.append(time.monotonic())


class RateLimiters:
    """Named limiters of one server; a call passes through each bucket it names."""

    def __init__(self, limits: dict[str, tuple[int, float]]) -> None:
        self._limiters = {name: SlidingWindowLimiter(n, period) for name, (n, period) in limits.items()}

    def __getitem__(self, name: str) -> SlidingWindowLimiter:
        return self._limiters[name]

    async def acquire(self, buckets: Iterable[str]) -> None:
        for name in buckets:
            await self._limiters[name].acquire()

    def defer(self, buckets: Iterable[str], seconds: float) -> None:
        for name in buckets:
            self._limiters[name].defer(seconds)
