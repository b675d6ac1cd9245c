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

import asyncio
import itertools
import logging
from contextvars import ContextVar
from typing import Any

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

logger = logging.getLogger("mcp_gateway.relay")

_RESERVED = "io.modelcontextprotocol/"
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_NO_SESSION = "__no_session__"  # FastMCP's logging/setLevel key for a connection without a session id
# The client capability each relayed request needs.
CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}


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


def client_log_level(server: Any, session_key: str | None) -> str | None:
    """The level a client set with `logging/setLevel` on the FastMCP front `server` (kept per session there)."""
    levels = getattr(server, "_client_log_levels", None)
    return levels.get(session_key or _NO_SESSION) if levels else None


def has_capability(capabilities: Any, method: str) -> bool:
    """`capabilities` (a ClientCapabilities dict from `initialize`) covers `method`."""
    name = CAPABILITY.get(method)
    return isinstance(capabilities, dict) and name is not None and capabilities.get(name) is not None


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

    async def forward_request(self, backend: str, method: str, params: dict[str, Any] | None,
                              timeout: float) -> dict[str, Any] | mcp_types.ErrorData:
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


def strip_reserved(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop the backend hop's reserved `_meta` keys (each hop stamps its own)."""
    if not params or not isinstance(meta := params.get("_meta"), dict):
        return params
    cleaned = {key: value for key, value in meta.items() if not key.startswith(_RESERVED)}
    params = dict(params)
    if cleaned:
        params["_meta"] = cleaned
    else:
        del params["_meta"]
    return params


class Replies:
    """Pending relayed requests of one front transport, answered by the client's JSON-RPC responses."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[str, tuple[object, asyncio.Future[dict[str, Any]]]] = {}

    def __bool__(self) -> bool:
        return bool(self._waiting)

    async def ask(self, owner: object, post: Any, method: str, params: dict[str, Any] | None,
                  timeout: float) -> dict[str, Any]:
        """Post a request through `post`, wait for `take` to deliver the answer from `owner`."""
        request_id = f"gw-relay-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (owner, future)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            post(message)
            with anyio.fail_after(timeout):
                answer = await future
        finally:
            self._waiting.pop(request_id, None)
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise MCPError(int(error.get("code", mcp_types.INTERNAL_ERROR)), str(error.get("message", "error")),
                           error.get("data"))
        result = answer.get("result")
        return result if isinstance(result, dict) else {}

    def take(self, owner: object, message: Any) -> bool:
        """Deliver `message` if it is `owner`'s answer to one of our requests."""
        if not isinstance(message, dict) or "method" in message:
            return False
        entry = self._waiting.get(message.get("id"))  # type: ignore[arg-type]
        if entry is None or entry[0] != owner:
            return False
        if not entry[1].done():
            entry[1].set_result(message)
        return True


class ContextPeer(Peer):
    """A request the FastMCP front is serving: relayed messages ride that request's own stream."""

    def __init__(self, request_context: Any, server: Any = None) -> None:
        self._session = request_context.session  # the per-request ServerSession
        self._outbound = self._session._request_outbound  # this request's stream (public API is typed only)
        self.key = getattr(self._session, "_connection", self._session)
        self._server = server
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def log_level(self) -> str | None:
        return client_log_level(self._server, getattr(self.key, "session_id", None))

    def capable(self, method: str) -> bool:
        if self._session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return False  # the 2026 era has no server-to-client requests (SEP-2322)
        capabilities = self._session.client_capabilities
        if capabilities is None:
            return False
        return has_capability(capabilities.model_dump(by_alias=True, exclude_none=True), method)

    def post(self, message: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._outbound.notify(message["method"], message.get("params")))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def request(self, method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        return await self._outbound.send_raw_request(method, params, {"timeout": timeout})

    async def drain(self) -> None:
        """Wait until every posted notification is written (so they precede the request's answer)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def context_peer(context: Any) -> ContextPeer | None:
    """A peer for the FastMCP request `context` (a fastmcp `Context`), if it has a live request."""
    try:
        request_context = context.request_context if context is not None else None
    except Exception:
        return None
    if request_context is None or getattr(request_context, "session", None) is None:
        return None
    try:
        return ContextPeer(request_context, getattr(context, "fastmcp", None))
    except (AttributeError, RuntimeError):
        return None
