"""The client side of a front request, the same for every front path: a `ClientPeer` that relays a backend's
requests and notifications (and the call's progress) to the client whose call is in flight, and the
`Replies` table that matches the client's answers to relayed requests on the gateway's own transports."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.backends.inflight import Peer
from gateway.backends.pipe import ProgressCallback
from gateway.backends.rounds import has_capability
from gateway.transports import framework

Post = Callable[[dict[str, Any]], Awaitable[None] | None]  # send a notification; an awaitable is scheduled
Ask = Callable[[str, dict[str, Any] | None, float], Awaitable[dict[str, Any]]]


def declared_capabilities(message: Any) -> dict[str, Any] | None:
    """The client capabilities an `initialize` request declares (None for any other message)."""
    if not isinstance(message, dict) or message.get("method") != "initialize":
        return None
    params = message.get("params")
    capabilities = params.get("capabilities") if isinstance(params, dict) else None
    return capabilities if isinstance(capabilities, dict) else None


def progress_reporter(post: Post, token: Any) -> ProgressCallback:
    """A backend's progress reported to the client on the client's own `progressToken`."""

    async def report(progress: float, total: float | None, message: str | None) -> None:
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        pending = post({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
        if pending is not None:
            await pending

    return report


class ClientPeer(Peer):
    """The client of one front request: `post` sends it a notification, `ask` a request; `key` names its
    session (calls with the same key share relayed traffic)."""

    def __init__(
        self,
        key: object,
        post: Post,
        ask: Ask,
        capabilities: dict[str, Any] | None,
        server: Any = None,
        session_id: str | None = None,
    ) -> None:
        self.key = key
        self._post = post
        self._ask = ask
        self._capabilities = capabilities  # None: the client may be asked nothing
        self._server = server  # the FastMCP front, which keeps each session's logging/setLevel
        self._session_id = session_id
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def log_level(self) -> str | None:
        return framework.client_log_level(self._server, self._session_id)

    def capable(self, method: str) -> bool:
        return has_capability(self._capabilities, method)

    def post(self, message: dict[str, Any]) -> None:
        pending = self._post(message)
        if pending is not None:  # written by a task: `drain` waits for it before the request's answer
            task = asyncio.get_running_loop().create_task(_awaited(pending))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def request(self, method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        return await self._ask(method, params, timeout)

    async def drain(self) -> None:
        """Wait until every posted notification is written (so they precede the request's answer)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def _awaited(pending: Awaitable[None]) -> None:
    await pending


class Replies:
    """Pending relayed requests of one front transport, answered by the client's JSON-RPC responses."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[str, tuple[object, asyncio.Future[dict[str, Any]]]] = {}

    def __bool__(self) -> bool:
        return bool(self._waiting)

    async def ask(
        self, owner: object, post: Any, method: str, params: dict[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
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
            raise MCPError(
                int(error.get("code", mcp_types.INTERNAL_ERROR)), str(error.get("message", "error")), error.get("data")
            )
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


def context_peer(context: Any) -> ClientPeer | None:
    """The peer of the request the FastMCP `context` serves, if it has a live request: relayed messages ride
    that request's own stream."""
    try:
        request_context = context.request_context if context is not None else None
    except Exception:
        return None
    session = getattr(request_context, "session", None) if request_context is not None else None
    if session is None:
        return None
    try:
        channel = framework.request_channel(session)
        connection = framework.connection_of(session)
        capabilities = None
        if session.protocol_version not in MODERN_PROTOCOL_VERSIONS:  # 2026: no server-to-client requests
            declared = session.client_capabilities
            capabilities = declared.model_dump(by_alias=True, exclude_none=True) if declared is not None else None
    except (AttributeError, RuntimeError):
        return None

    def post(message: dict[str, Any]) -> Awaitable[None]:
        notified: Awaitable[None] = channel.notify(message["method"], message.get("params"))
        return notified

    async def ask(method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        result: dict[str, Any] = await channel.send_raw_request(method, params, {"timeout": timeout})
        return result

    return ClientPeer(
        connection, post, ask, capabilities, getattr(context, "fastmcp", None), getattr(connection, "session_id", None)
    )


def current_context() -> Any:
    """The fastmcp `Context` of the request being served, or None outside one."""
    from fastmcp.server.dependencies import get_context

    try:
        return get_context()
    except RuntimeError:
        return None
