"""A bulkhead per backend: at most `max_concurrent` calls in flight, at most `max_queue` waiting.

Written here rather than taken from anyio: `CapacityLimiter`/`Semaphore` have no bound on their waiters
(the queue is the memory leak we are guarding against) and checkpoint on every acquire; this one takes a
free slot with no await at all and hands a released slot straight to the oldest waiter.
"""

from __future__ import annotations

from collections import deque

import anyio


class Overloaded(Exception):
    """The backend's bulkhead is full: too many calls in flight and in the queue (or the wait timed out)."""


class Bulkhead:
    def __init__(self, name: str, max_concurrent: int, max_queue: int, queue_timeout: float) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.active = 0
        self.rejected = 0
        self._waiters: deque[anyio.Event] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def take(self) -> bool:
        """Take a free slot at once if there is one (no coroutine, no await: almost every call)."""
        if self.active < self.max_concurrent and not self._waiters:
            self.active += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.take():
            return
        if len(self._waiters) >= self.max_queue:
            self.rejected += 1
            raise Overloaded(
                f"backend '{self.name}' is overloaded: {self.active} calls in flight and {self.queued} waiting"
            )
        event = anyio.Event()
        self._waiters.append(event)
        try:
            with anyio.move_on_after(self.queue_timeout):
                await event.wait()
        except BaseException:
            self._abandon(event)
            raise
        if not event.is_set():
            self._abandon(event)
            self.rejected += 1
            raise Overloaded(f"backend '{self.name}' is overloaded: no call slot freed within {self.queue_timeout:g} s")
        # the releaser handed its slot over: `active` already counts this call

    def _abandon(self, event: anyio.Event) -> None:
        if event.is_set():  # a slot was handed over as we gave up: pass it on
            self.release()
        else:
            self._waiters.remove(event)

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the slot passes to the oldest waiter
        else:
            self.active -= 1
