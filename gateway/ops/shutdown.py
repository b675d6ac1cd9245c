"""Graceful shutdown on SIGTERM / SIGINT.

HTTP (`GracefulServer`, a uvicorn server):
  1. drain: `/ready` answers 503 at once while everything else is still served, for `drain_seconds`,
     so a load balancer takes the replica out of rotation before it stops listening;
  2. close: stop accepting connections; wait until no tool call is in flight (at most `shutdown_timeout`);
  3. exit: uvicorn closes the remaining connections (event streams included) and runs the lifespan
     shutdown; the caller then cancels the hub, which closes every backend session (stdio children get
     EOF on stdin, then SIGTERM, then SIGKILL from the MCP SDK) and the process exits 0.
A second signal skips the rest of the drain window; a third exits without waiting.

stdio: the signal is treated like EOF on stdin: no new message is read, the calls already accepted
finish (bounded), the backends are closed and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import anyio
import uvicorn

from gateway.ops import metrics

logger = logging.getLogger("mcp_gateway.shutdown")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
STREAM_GRACE_SECONDS = 2  # after the calls finished: time for last responses and open streams to close


class Drainable(Protocol):
    """What shutdown needs of the hub: a draining flag (/ready answers 503) and its calls in flight."""

    draining: bool

    @property
    def in_flight(self) -> int: ...


class GracefulServer(uvicorn.Server):
    """uvicorn with a drain phase before it stops listening, and a wait for the hub's calls in flight."""

    def __init__(self, config: uvicorn.Config, hub: Drainable, drain_seconds: float, shutdown_timeout: float) -> None:
        super().__init__(config)
        self.hub = hub
        self.drain_seconds = drain_seconds
        self.shutdown_timeout = shutdown_timeout
        self.phase = "serving"  # → draining → closing → (should_exit)
        self.signals = 0
        self._deadline = 0.0
        self._idle_ticks = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: only set flags here; on_tick (the server's 0.1 s loop) acts on them.
        # Not calling super() also keeps uvicorn from re-raising the signal after serve(), so we exit 0.
        self.signals += 1
        self.hub.draining = True  # /ready answers 503 from now on
        if self.signals >= 3:
            self.should_exit = self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.signals and not self.should_exit:
            self._advance()
        return await super().on_tick(counter)

    def _advance(self) -> None:
        now = time.monotonic()
        if self.phase == "serving":
            self.phase = "draining"
            self._deadline = now + self.drain_seconds
            metrics.DRAINING.set(1)
            logger.info("shutdown: draining for %.1f s (/ready answers 503)", self.drain_seconds)
        if self.phase == "draining" and (now >= self._deadline or self.signals >= 2):
            self.phase = "closing"
            self._deadline = now + self.shutdown_timeout
            for server in self.servers:
                server.close()  # stop accepting connections; the open ones are still served
            logger.info("shutdown: stopped listening; %d tool call(s) in flight", self.hub.in_flight)
        if self.phase == "closing":
            # Idle on two ticks in a row: the last results have had a tick to be written out.
            self._idle_ticks = self._idle_ticks + 1 if self.hub.in_flight == 0 else 0
            if self._idle_ticks >= 2:
                self.should_exit = True
            elif now >= self._deadline:
                logger.warning(
                    "shutdown: %d tool call(s) still in flight after %.0f s; cutting them off",
                    self.hub.in_flight,
                    self.shutdown_timeout,
                )
                self.should_exit = True


async def stop_on_signal(stop: Callable[[], None]) -> None:
    """Call `stop` at the first SIGTERM/SIGINT (stdio transport). The default handlers are back after it,
    so a second signal ends the process at once."""
    with anyio.open_signal_receiver(*SIGNALS) as received:
        async for signum in received:
            logger.info("shutdown: %s received; finishing calls in flight", signal.Signals(signum).name)
            metrics.DRAINING.set(1)
            stop()
            break
