"""Backend-to-client traffic of a call: what a backend sends *while serving a request* goes to the client
that made the request.

A backend may ask the client something in the middle of a call (`sampling/createMessage`,
`elicitation/create`, `roots/list`) or log to it (`notifications/message`). The backend speaks to the gateway
on one shared session, and nothing on the wire says which front request such a message belongs to, so each
backend keeps the calls it is serving in an `InFlight` table: the front transport that accepted a call puts a
`Peer` (how to reach that call's client) in `CURRENT_PEER` before calling the hub, and `Backend.request`
registers it for the duration of the call. A relayed message goes to the client of the calls in flight when
every one of them belongs to the same client session (the common case: one call at a time, or one client);
when calls of different clients overlap, requests are refused and log messages dropped rather than risk
sending one client's prompt to another.

Cost on the hot path: one object, one context-variable set/reset and one dict insert/pop per call; no awaits.
"""

from __future__ import annotations

import itertools
import logging
from contextvars import ContextVar
from typing import Any

import mcp_types
from mcp.shared.exceptions import MCPError

from gateway.backends.messages import strip_reserved

logger = logging.getLogger("mcp_gateway.relay")

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


class Peer:
    """The client side of one front request: where relayed requests and notifications go."""

    key: object = None  # identifies the client session: calls with the same key share relayed traffic

    @property
    def log_level(self) -> str | None:
        """The lowest log level the client asked for with `logging/setLevel`; None if it has not asked."""
        return None

    def capable(self, method: str) -> bool:
        """Whether the client declared the capability `method` needs."""
        return False

    def post(self, message: dict[str, Any]) -> None:
        """Send a notification to the client, in order with the call's other output; never blocks."""

    async def request(self, method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        """Send a request to the client and return its result; `MCPError` for an error answer."""
        raise MCPError(mcp_types.METHOD_NOT_FOUND, f"the client cannot be asked '{method}'")


CURRENT_PEER: ContextVar[Peer | None] = ContextVar("mcp_gateway_peer", default=None)


class InFlight:
    """The calls a backend is serving right now, each with its client's `Peer`."""

    def __init__(self) -> None:
        self._calls: dict[int, Peer] = {}
        self._ids = itertools.count()

    def enter(self, peer: Peer) -> int:
        token = next(self._ids)
        self._calls[token] = peer
        return token

    def leave(self, token: int) -> None:
        self._calls.pop(token, None)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def route(self) -> Peer | None:
        """The peer relayed traffic goes to: the latest call's, if every call in flight is the same client's."""
        calls = self._calls
        if not calls:
            return None
        peers = list(calls.values())
        latest = peers[-1]
        if len(peers) > 1 and any(peer.key is not latest.key for peer in peers):
            return None
        return latest

    async def forward_request(
        self, backend: str, method: str, params: dict[str, Any] | None, timeout: float
    ) -> dict[str, Any] | mcp_types.ErrorData:
        """Relay a backend's request to the client of its call; the client's result or an error."""
        peer = self.route()
        if peer is None:
            reason = "calls of several clients are in flight" if self._calls else "no call of a client is in flight"
            logger.info("backend %s asked %s, but %s; refused", backend, method, reason)
            return mcp_types.ErrorData(
                code=mcp_types.INVALID_REQUEST, message=f"mcp-gateway cannot route '{method}': {reason}"
            )
        if not peer.capable(method):
            return mcp_types.ErrorData(
                code=mcp_types.INVALID_REQUEST, message=f"the client does not support '{method}'"
            )
        try:
            return await peer.request(method, strip_reserved(params), timeout)
        except MCPError as error:
            return error.error
        except TimeoutError:
            return mcp_types.ErrorData(code=mcp_types.REQUEST_TIMEOUT, message=f"the client did not answer '{method}'")

    def forward_notification(self, message: dict[str, Any]) -> bool:
        """Relay a backend's notification (a JSON-RPC dict) to the client of its call; False if none."""
        peer = self.route()
        if peer is None:
            return False
        floor = peer.log_level
        if floor is not None and message.get("method") == "notifications/message":
            level = (message.get("params") or {}).get("level")
            if level in LOG_LEVELS and floor in LOG_LEVELS and LOG_LEVELS.index(level) < LOG_LEVELS.index(floor):
                return True  # below what the client asked for: taken, not sent
        peer.post(message)
        return True
