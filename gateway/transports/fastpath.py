"""The lean path for the hot methods (`tools/call`, `tools/list`): plain dicts from the wire to the
backend session and back, without building a model per message.

Transports decide *whether* a message may take this path (the session is established, the headers
agree); this module only answers it, in the shape the client's protocol revision expects. Anything
else goes to the FastMCP front, which implements the whole protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Hashable
from typing import Any, TypeVar

from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway import __version__
from gateway.backends.rounds import InputRound, InvalidRound
from gateway.guard.clients import Client
from gateway.guard.guard import Guard
from gateway.routing.hub import Hub
from gateway.transports.jsonrpc import INVALID_PARAMS
from gateway.transports.peers import Post, progress_reporter

PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
MODERN_VERSIONS = frozenset(MODERN_PROTOCOL_VERSIONS)
FAST_METHODS = frozenset({"tools/call", "tools/list"})
T = TypeVar("T")


def modern_version(message: dict[str, Any]) -> str | None:
    """The 2026-era protocol version a request declares in its `_meta`, if it is one we serve."""
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return None
    version = meta.get(PROTOCOL_VERSION_META)
    return version if isinstance(version, str) and version in MODERN_VERSIONS else None


def cancelled_request_id(message: Any) -> Any:
    """The `requestId` of a `notifications/cancelled`, or None for any other message."""
    if isinstance(message, dict) and message.get("method") == "notifications/cancelled":
        params = message.get("params")
        if isinstance(params, dict):
            return params.get("requestId")
    return None


def is_fast_candidate(message: Any) -> bool:
    """A single request for a hot method whose params are well-formed enough to answer here."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "id" not in message:
        return False
    method = message.get("method")
    if method not in FAST_METHODS:
        return False
    params = message.get("params")
    if method == "tools/list":
        return params is None or (isinstance(params, dict) and params.get("cursor") is None)
    return (
        isinstance(params, dict)
        and isinstance(params.get("name"), str)
        and isinstance(params.get("arguments", {}), dict)
    )


class CallScope:
    """The cancellation of one fast-path call, by asyncio's own task cancellation: `cancel` (a client's
    `notifications/cancelled`, its disconnect) cancels the task running the call, and `run` takes that
    cancellation back and answers None. An anyio cancel scope per call did the same at ~3.8 µs a
    call (its task state, a weak reference, the backend look-up); the stdio front cancels its calls' tasks the
    same way. Like any task cancellation it is delivered at the call's next await, shielded scopes included.
    A `cancel` before the call starts is remembered; after it ends, it does nothing."""

    __slots__ = ("_task", "cancel_called", "ended")

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self.cancel_called = False
        self.ended = False

    def cancel(self) -> None:
        if self.cancel_called or self.ended:
            return
        self.cancel_called = True
        if self._task is not None:
            self._task.cancel()

    def cancelled(self) -> bool:
        return self.cancel_called

    async def run(self, call: Coroutine[Any, Any, T]) -> T | None:
        """`call`'s result, or None when `cancel` came first (before it started, or while it ran)."""
        if self.cancel_called:
            call.close()
            return None
        task = self._task = asyncio.current_task()
        assert task is not None
        try:
            result = await call
        except asyncio.CancelledError:
            if self.cancelled() and task.uncancel() == 0:  # ours alone (not, say, the server's shutdown)
                return None
            raise
        finally:
            self.ended, self._task = True, None
        if self.cancelled() and task.cancelling():  # delivered, and swallowed inside the call
            task.uncancel()
        return result


class FastPath:
    """Answers hot requests straight from the hub."""

    def __init__(self, hub: Hub, guard: Guard | None = None) -> None:
        self.hub = hub
        self.guard = guard or Guard(hub)
        self.server_info = {"name": "mcp-gateway", "version": __version__}
        self._in_flight: dict[Hashable, CallScope] = {}

    def track(self, key: Hashable) -> CallScope:
        """Register request `key` as cancellable now, before its task runs; pass the scope to `answer_tracked`."""
        scope = self._in_flight[key] = CallScope()
        return scope

    async def answer_tracked(
        self,
        scope: CallScope,
        key: Hashable,
        message: dict[str, Any],
        *,
        modern: bool,
        post: Post | None = None,
        client: Client | None = None,
    ) -> dict[str, Any] | None:
        """`answer`, unless `scope` was cancelled first (a `notifications/cancelled` for `key`, a disconnect):
        then None, no response."""
        try:
            return await scope.run(self.answer(message, modern=modern, post=post, client=client))
        finally:
            if key is not None and self._in_flight.get(key) is scope:
                del self._in_flight[key]

    def cancel(self, key: Hashable) -> bool:
        """Cancel the in-flight fast-path request `key`; the backend is sent `notifications/cancelled`."""
        scope = self._in_flight.get(key)
        if scope is None:
            return False
        scope.cancel()
        return True

    def _shape(self, result: dict[str, Any], modern: bool) -> dict[str, Any]:
        if modern:
            result.setdefault("resultType", "complete")  # or the backend's `input_required`, passed through
            meta = result.get("_meta")
            result["_meta"] = (
                {**meta, SERVER_INFO_META: self.server_info} if meta else {SERVER_INFO_META: self.server_info}
            )
        return result

    async def answer(
        self,
        message: dict[str, Any],
        *,
        modern: bool,
        post: Post | None = None,
        client: Client | None = None,
    ) -> dict[str, Any]:
        """The JSON-RPC response to one fast-path request; `client` is the authenticated caller, `post` sends
        the client a notification (the call's progress) ahead of the response."""
        request_id = message["id"]
        params = message.get("params") or {}
        if message["method"] == "tools/list":
            result: dict[str, Any] = {"tools": self.guard.tools(client)}
            if modern:
                result.update(self.guard.list_hints(client))
            return {"jsonrpc": "2.0", "id": request_id, "result": self._shape(result, modern)}
        meta = params.get("_meta")
        progress_token = meta.get("progressToken") if isinstance(meta, dict) else None
        on_progress = progress_reporter(post, progress_token) if progress_token is not None and post else None
        input_round = None
        if modern:  # the client answers a backend's input rounds itself; its retry carries their fields
            try:
                input_round = InputRound.parse(params)
            except InvalidRound as error:
                return {"jsonrpc": "2.0", "id": request_id, "error": {"code": INVALID_PARAMS, "message": str(error)}}

        result = await self.guard.call_tool(
            client,
            params["name"],
            params.get("arguments"),
            meta=meta if isinstance(meta, dict) else None,
            on_progress=on_progress,
            input_round=input_round,
        )
        return {"jsonrpc": "2.0", "id": request_id, "result": self._shape(result, modern)}
