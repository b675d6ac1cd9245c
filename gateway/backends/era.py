"""The protocol era the backends' sessions are opened in, when one client decides it.

By default a backend session negotiates the newest era the backend speaks (2026-07-28 `server/discover`,
else the 2025-11-25 `initialize` handshake): the gateway serves clients of both eras over HTTP on one shared
session and translates between them (`gateway.backends.rounds`).

Over stdio the gateway has exactly one client for its whole life, so there is nothing to share: a
`ClientEra` holds that client's era, decided by its first request that names one (`initialize` is the
handshake; a request carrying the 2026-07-28 `_meta` envelope, or `server/discover`, is the modern era), and
each backend waits for it before negotiating. A handshake-era client then reaches handshake-era backends: a
backend's mid-call requests and logs reach the client as a direct client of the backend would get them, and
the backend serves each call at the cost of its handshake session instead of the per-request 2026-07-28
envelope (docs/benchmarks.md, "the era of the backend session"). A modern client gets modern backends, as
over HTTP. A backend that does not speak the chosen era still gets the one it speaks.
"""

from __future__ import annotations

from typing import Any

import anyio

HANDSHAKE_METHOD = "initialize"
DISCOVER_METHOD = "server/discover"


class ClientEra:
    """The one client's protocol era: undecided until `decide`; `wait` returns it (True: 2026-07-28)."""

    def __init__(self) -> None:
        self.modern: bool | None = None
        self._decided = anyio.Event()

    @property
    def decided(self) -> bool:
        return self.modern is not None

    def decide(self, modern: bool) -> None:
        """Fix the era (the first decision stands: a connection's era does not change)."""
        if self.modern is None:
            self.modern = modern
            self._decided.set()

    def observe(self, method: Any, modern_envelope: bool) -> None:
        """Decide from a client request's `method` and whether it carries the 2026-07-28 envelope; any
        other request (and a notification) leaves the era open."""
        if method == HANDSHAKE_METHOD:  # the handshake: legacy even when a client stamps the envelope on it
            self.decide(False)
        elif modern_envelope or method == DISCOVER_METHOD:
            self.decide(True)

    async def wait(self) -> bool:
        """The era, once decided."""
        await self._decided.wait()
        assert self.modern is not None
        return self.modern
