"""The client side of a front request, for each front path: a `Peer` that relays a backend's requests and
notifications to the client whose call is in flight, and the `Replies` table that matches the client's
answers to relayed requests."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.backends.inflight import Peer

_NO_SESSION = "__no_session__"  # FastMCP's logging/setLevel key for a connection without a session id
# The client capability each relayed request needs.
CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}


def client_log_level(server: Any, session_key: str | None) -> str | None:
    """The level a client set with `logging/setLevel` on the FastMCP front `server` (kept per session there)."""
    levels = getattr(server, "_client_log_levels", None)
    return levels.get(session_key or _NO_SESSION) if levels else None


def has_capability(capabilities: Any, method: str) -> bool:
    """`capabilities` (a ClientCapabilities dict from `initialize`) covers `method`."""
    name = CAPABILITY.get(method)
    return isinstance(capabilities, dict) and name is not None and capabilities.get(name) is not None


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


def current_context() -> Any:
    from fastmcp.server.dependencies import get_context

    try:
        return get_context()
    except RuntimeError:
        return None
