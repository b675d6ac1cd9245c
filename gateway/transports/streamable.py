"""Streamable HTTP at `/mcp`, with the fast path in front of FastMCP's implementation.

A POST that carries one hot request (`tools/call`, `tools/list`) of an established session, or of
the stateless 2026-07-28 revision with its envelope and headers in order, is answered here: as a
JSON response, or as an SSE stream when the backend reports progress first. Every other request
(handshakes, GET streams, DELETE, batches, anything malformed or doubtful) is replayed unchanged to
FastMCP, which owns the protocol's error answers.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import deque
from collections.abc import Callable, Container
from typing import Any

from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundModernRoute,
    classify_inbound_request,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from gateway.auth.middleware import CLIENT_SCOPE_KEY
from gateway.backends.inflight import CURRENT_PEER
from gateway.guard.clients import Client
from gateway.ops.asgi import ASGIApp, Message, Receive, Scope, Send
from gateway.ops.codec import dumps
from gateway.transports import jsonrpc
from gateway.transports.fastpath import CallScope, FastPath, cancelled_request_id, is_fast_candidate, modern_version
from gateway.transports.peers import ClientPeer, Replies, declared_capabilities

_HANDSHAKE_VERSIONS = frozenset(HANDSHAKE_PROTOCOL_VERSIONS)
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform")]


Fields = dict[bytes, bytes]
"""A request's headers by (lowercase) name, read once per POST (a repeated header: its last value)."""


def _session_id(fields: Fields) -> str | None:
    value = fields.get(b"mcp-session-id")
    return None if value is None else value.decode("latin-1")


_TRIMMED = frozenset({b"mcp-method", b"mcp-name"})


def _trimmed(scope: Scope) -> Scope:
    """`scope` with surrounding whitespace removed from the `Mcp-Method` and `Mcp-Name` values (SEP-2243:
    a server accepts it), copied only when there is some."""
    headers = scope["headers"]
    if not any(name in _TRIMMED and value != value.strip() for name, value in headers):
        return scope
    return {**scope, "headers": [(n, v.strip() if n in _TRIMMED else v) for n, v in headers]}


def _cancelled(request_id: Any) -> dict[str, Any]:
    """What the POST of a cancelled request gets (HTTP must answer; the client has stopped waiting)."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32800, "message": "Request cancelled"}}


RATE_LIMITED = -32029  # JSON-RPC server error: the client is over one of its limits (answered with HTTP 429)


async def _send_jsonrpc(
    send: Send, status: int, document: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = dumps(document)
    all_headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class StreamableFront:
    """The ASGI handler mounted at `/mcp`."""

    def __init__(
        self,
        fast: FastPath,
        fallback: ASGIApp,
        session_ids: Callable[[], Container[str]],
        max_sessions_per_client: int | None = None,
    ) -> None:
        self.fast = fast
        self.fallback = fallback
        self.session_ids = session_ids  # FastMCP's live session table
        self.server = getattr(getattr(fallback, "state", None), "fastmcp_server", None)  # the FastMCP front
        self.replies = Replies()  # relayed requests awaiting the client's answer
        self.client_capabilities: dict[str, Any] = {}  # session id -> capabilities from its `initialize`
        self.max_sessions_per_client = max_sessions_per_client  # with auth: `gateway.auth.max_sessions_per_client`
        self.session_clients: dict[str, str] = {}  # session id -> the authenticated client that opened it
        self.watches = _Watches()  # the clients of calls still running, watched for a disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self.fallback(_trimmed(scope), receive, send)
            return
        fields: Fields = dict(scope["headers"])
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            message = jsonrpc.decode(body)
        except jsonrpc.Malformed as error:
            if error.code == jsonrpc.PARSE_ERROR:  # not JSON at all: the SDK answers (415/406/400 as due)
                await self.fallback(_trimmed(scope), _replay(body, receive), send)
                return
            await _send_jsonrpc(send, 400, error.response)
            return
        if self._cancels_fast_request(fields, message) or (self.replies and self._take_reply(fields, message)):
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        request = self._eligible(fields, message)
        if request is None:
            scope = _trimmed(scope)
            if isinstance(message, dict) and message.get("method") == "initialize":
                client = scope.get(CLIENT_SCOPE_KEY)
                if client is not None and (refusal := await self._refuse_initialize(client, message)) is not None:
                    status, document, headers = refusal
                    await _send_jsonrpc(send, status, document, headers)
                    return
                send = self._capture_capabilities(message, send, client)
            await self.fallback(scope, _replay(body, receive), send)
            return
        modern, message = request
        await self._answer(message, modern, receive, send, _session_id(fields), scope.get(CLIENT_SCOPE_KEY))

    def _take_reply(self, fields: Fields, message: Any) -> bool:
        """Deliver a client's answer to a relayed request (a JSON-RPC response POSTed to the session)."""
        session_id = _session_id(fields)
        return session_id is not None and self.replies.take(session_id, message)

    async def _refuse_initialize(
        self, client: Client, message: dict[str, Any]
    ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]] | None:
        """429 when `client` is over its rate limit or already holds `max_sessions_per_client` sessions."""
        request_id = message.get("id")
        if (seconds := await self.fast.guard.rate_limited(client)) is not None:
            text = f"Rate limit exceeded for client '{client.name}': retry after {seconds:g} s"
            error = {"code": RATE_LIMITED, "message": text, "data": {"retryAfterSeconds": seconds}}
            return (
                429,
                {"jsonrpc": "2.0", "id": request_id, "error": error},
                [(b"retry-after", str(math.ceil(seconds)).encode())],
            )
        limit = self.max_sessions_per_client
        if limit is None:
            return None
        self._forget_closed_sessions()
        held = sum(1 for owner in self.session_clients.values() if owner == client.name)
        if held < limit:
            return None
        text = (
            f"Too many sessions: client '{client.name}' already holds {held} open sessions "
            f"(gateway.auth.max_sessions_per_client is {limit}); close one (DELETE) or reuse it"
        )
        error = {
            "code": RATE_LIMITED,
            "message": text,
            "data": {"limit": "gateway.auth.max_sessions_per_client", "max": limit},
        }
        return 429, {"jsonrpc": "2.0", "id": request_id, "error": error}, []

    def _forget_closed_sessions(self) -> None:
        live = self.session_ids()
        for table in (self.client_capabilities, self.session_clients):
            for stale in [key for key in table if key not in live]:
                del table[stale]

    def _capture_capabilities(self, message: dict[str, Any], send: Send, client: Client | None = None) -> Send:
        """Remember the client capabilities an `initialize` declares (and the client that sent it), under the
        session id FastMCP assigns."""
        capabilities = declared_capabilities(message)

        async def capturing_send(event: Message) -> None:
            if event["type"] == "http.response.start":
                for name, value in event.get("headers", ()):
                    if name.lower() == b"mcp-session-id":
                        self._forget_closed_sessions()
                        session_id = value.decode("latin-1")
                        self.client_capabilities[session_id] = capabilities
                        if client is not None:
                            self.session_clients[session_id] = client.name
            await send(event)

        return capturing_send

    def _cancels_fast_request(self, fields: Fields, message: Any) -> bool:
        """A session's `notifications/cancelled` for a request this path is answering: cancel it here."""
        request_id = cancelled_request_id(message)
        if request_id is None:
            return False
        session_id = _session_id(fields)
        return session_id is not None and self.fast.cancel((session_id, request_id))

    def _eligible(self, fields: Fields, message: Any) -> tuple[bool, dict[str, Any]] | None:
        """(modern?, request) when this POST may take the fast path, else None."""
        if b"\nmcp-param-" in b"\n" + b"\n".join(fields):
            return None  # x-mcp-header arguments: let the SDK validate them
        accept = fields.get(b"accept", b"")
        if b"application/json" not in accept or b"text/event-stream" not in accept:
            return None
        if not fields.get(b"content-type", b"").startswith(b"application/json"):
            return None
        if not is_fast_candidate(message):
            return None
        session_id = _session_id(fields)
        if session_id is not None:
            version = fields.get(b"mcp-protocol-version")
            if modern_version(message) or session_id not in self.session_ids():
                return None
            if version is not None and version.decode("latin-1") not in _HANDSHAKE_VERSIONS:
                return None
            return False, message
        routing = {}  # the headers the SDK's ladder reads, `Mcp-Method` and `Mcp-Name` trimmed (see `_trimmed`)
        if (version := fields.get(b"mcp-protocol-version")) is not None:
            routing[MCP_PROTOCOL_VERSION_HEADER] = version.decode("latin-1")
        if (method := fields.get(b"mcp-method")) is not None:
            routing[MCP_METHOD_HEADER] = method.strip().decode("latin-1")
        if (name := fields.get(b"mcp-name")) is not None:
            routing[MCP_NAME_HEADER] = name.strip().decode("latin-1")
        if not isinstance(classify_inbound_request(message, headers=routing), InboundModernRoute):
            return None
        return True, message

    async def _answer(
        self,
        message: dict[str, Any],
        modern: bool,
        receive: Receive,
        send: Send,
        session_id: str | None,
        client: Client | None = None,
    ) -> None:
        """Run the call in this request's own task; answer JSON, or SSE once a notification or relayed request
        comes first. A client that disconnects cancels the call (the backend is told)."""
        reply = _Reply(send)
        key = (session_id, message["id"]) if session_id is not None else None  # cancellable by the session
        scope = self.fast.track(key) if key is not None else CallScope()
        token = None
        if session_id is not None and not modern:  # handshake-era session: the backend may ask it things
            capabilities = self.client_capabilities.get(session_id)
            ask = functools.partial(self.replies.ask, session_id, reply.post)  # answered by POSTs, see _take_reply
            token = CURRENT_PEER.set(ClientPeer(session_id, reply.post, ask, capabilities, self.server, session_id))
        self.watches.add(scope, receive)
        try:
            response = await self.fast.answer_tracked(
                scope, key, message, modern=modern, post=reply.post, client=client
            )
        finally:
            self.watches.remove(scope)
            if token is not None:
                CURRENT_PEER.reset(token)
        await reply.finish(response if response is not None else _cancelled(message["id"]))


WATCH_AFTER = 0.25
"""Seconds a fast-path call runs before a task starts watching for its client's disconnect."""


class _Watches:
    """Cancels a call's scope when its client disconnects. A watching task is started only for the calls still
    running `WATCH_AFTER` seconds in, by one loop timer for all of them: a cache hit, and most backend calls,
    are answered before then, so the hot path spawns no task and arms no timer per request (a timer armed and
    cancelled per call cost ~2 µs). A client that leaves sooner is noticed that much later; its call is
    cancelled all the same."""

    def __init__(self) -> None:
        self._waiting: dict[CallScope, tuple[float, Receive]] = {}  # oldest first (insertion order)
        self._watching: dict[CallScope, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, scope: CallScope, receive: Receive) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._waiting[scope] = (loop.time(), receive)
        if self._timer is None:
            self._timer = loop.call_later(WATCH_AFTER, self._sweep)

    def remove(self, scope: CallScope) -> None:
        if self._waiting.pop(scope, None) is None and (task := self._watching.pop(scope, None)) is not None:
            task.cancel()

    def _sweep(self) -> None:
        assert self._loop is not None
        self._timer = None
        due = self._loop.time() - WATCH_AFTER
        started = []
        for scope, (began, receive) in self._waiting.items():
            if began > due:
                break
            started.append(scope)
            self._watching[scope] = self._loop.create_task(self._watch(scope, receive))
        for scope in started:
            del self._waiting[scope]
        if self._waiting:  # at the next one's time
            self._timer = self._loop.call_at(next(iter(self._waiting.values()))[0] + WATCH_AFTER, self._sweep)

    async def _watch(self, scope: CallScope, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._watching.pop(scope, None)
        scope.cancel()


class _Reply:
    """The response to one fast-path POST: a JSON body when the answer comes first, else an SSE stream of the
    notifications and relayed requests that came before it, then the answer. Messages posted while the call
    runs (from this task or the backend's) are written in order by one writer task, started only when the
    first of them arrives; after the answer a straggler has nowhere to go."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: deque[dict[str, Any]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._streaming = False
        self._done = False

    def post(self, item: dict[str, Any]) -> None:
        if self._done:
            return
        self._pending.append(item)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_pending())

    async def _write_pending(self) -> None:
        while self._pending:
            await self._event(self._pending.popleft(), final=False)
        self._writer = None

    async def _event(self, item: dict[str, Any], *, final: bool) -> None:
        if not self._streaming:
            self._streaming = True
            await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        event = b"event: message\ndata: " + dumps(item) + b"\n\n"
        await self._send({"type": "http.response.body", "body": event, "more_body": not final})

    async def finish(self, response: dict[str, Any]) -> None:
        self._done = True
        if self._writer is not None:
            await self._writer
        if self._pending:
            await self._write_pending()
        if self._streaming:
            await self._event(response, final=True)
            return
        payload = dumps(response)
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._send({"type": "http.response.body", "body": payload})
