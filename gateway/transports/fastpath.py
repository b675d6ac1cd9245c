"""The lean path for the hot methods (`tools/call`, `tools/list`): plain dicts from the wire to the
backend session and back, without building a model per message.

Transports decide *whether* a message may take this path (the session is established, the headers
agree); this module only answers it, in the shape the client's protocol revision expects. Anything
else goes to the FastMCP front, which implements the whole protocol.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import anyio
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


class FastPath:
    """Answers hot requests straight from the hub."""

    def __init__(self, hub: Hub, guard: Guard | None = None) -> None:
        self.hub = hub
        self.guard = guard or Guard(hub)
        self.server_info = {"name": "mcp-gateway", "version": __version__}
        self._in_flight: dict[Hashable, anyio.CancelScope] = {}

    def track(self, key: Hashable) -> anyio.CancelScope:
        """Register request `key` as cancellable now, before its task runs; pass the scope to `answer_tracked`."""
        scope = self._in_flight[key] = anyio.CancelScope()
        return scope

    async def answer_tracked(
        self,
        scope: anyio.CancelScope,
        key: Hashable,
        message: dict[str, Any],
        *,
        modern: bool,
        post: Post | None = None,
        client: Client | None = None,
    ) -> dict[str, Any] | None:
        """`answer`, unless a `notifications/cancelled` for `key` came first (then None: no response)."""
        response = None
        try:
            with scope:
                response = await self.answer(message, modern=modern, post=post, client=client)
        finally:
            if self._in_flight.get(key) is scope:
                del self._in_flight[key]
        return response

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
