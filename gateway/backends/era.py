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
envelope (docs/benchmarks.md, "The backend session's era over stdio"). A modern client gets modern backends, as
over HTTP. A backend that does not speak the chosen era still gets the one it speaks.

A handshake-era client's `initialize` also says what it can be asked (`sampling`, `elicitation`, `roots`): its
backends' handshakes declare those and no others (`capabilities`), so a backend sees the client it serves, as
a direct connection would show it, and takes its own fallback where the client cannot answer (instead of
asking and getting the gateway's "the client does not support it"). Over HTTP, and for a 2026-07-28 client,
the backends see the gateway's own (it can relay all three).
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
        self.capabilities: dict[str, Any] | None = None  # a handshake-era client's, from its `initialize`
        self._decided = anyio.Event()

    @property
    def decided(self) -> bool:
        return self.modern is not None

    def decide(self, modern: bool, capabilities: dict[str, Any] | None = None) -> None:
        """Fix the era (the first decision stands: a connection's era does not change), with a handshake-era
        client's declared capabilities."""
        if self.modern is None:
            self.modern = modern
            self.capabilities = None if modern else capabilities or {}
            self._decided.set()

    def observe(self, method: Any, modern_envelope: bool, params: Any = None) -> None:
        """Decide from a client request's `method`, whether it carries the 2026-07-28 envelope, and its
        `params` (an `initialize`'s capabilities); any other request (and a notification) leaves the era open."""
        if method == HANDSHAKE_METHOD:  # the handshake: legacy even when a client stamps the envelope on it
            declared = params.get("capabilities") if isinstance(params, dict) else None
            self.decide(False, declared if isinstance(declared, dict) else None)
        elif modern_envelope or method == DISCOVER_METHOD:
            self.decide(True)

    async def wait(self) -> bool:
        """The era, once decided."""
        await self._decided.wait()
        assert self.modern is not None
        return self.modern
