"""The HTTP side of the gateway: one ASGI app serving Streamable HTTP at `/mcp`, the legacy HTTP+SSE
transport at `/sse` (posting to `/messages/`), and `/health`, `/ready`, `/metrics`, `/status` (the page for people)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, cast

from fastmcp import FastMCP

from gateway.auth.middleware import CLIENT_SCOPE_KEY, OPTIONAL_AUTH_PATHS, SecurityMiddleware, host_guard, protects
from gateway.guard.clients import Client
from gateway.ops import metrics, status
from gateway.ops.asgi import ASGIApp, Message, Receive, Scope, Send, send_error, send_json
from gateway.ops.logs import accept_request_id, request_id
from gateway.routing.hub import Hub

MCP_PATH = "/mcp"
SSE_PATH = "/sse"
MESSAGE_PATH = "/messages/"


class HTTPEntry:
    """The one ASGI layer in front of `GatewayHTTP`, one pass per request: the request id (taken from
    `X-Request-Id` or made, set for the logs, echoed in the response), the body limit (a declared
    `Content-Length` over `max_bytes` is refused at once with 413; a chunked body is counted as it is
    read), and for the MCP endpoints and `/metrics` the Origin check and authentication
    (`SecurityMiddleware.admit`). One pass over the headers and one `send` wrapper, where these used to
    be three stacked middlewares each wrapping `send`."""

    def __init__(self, app: ASGIApp, security: SecurityMiddleware | None, max_bytes: int) -> None:
        self.app = app
        self.security = security
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = dict(scope["headers"])  # by name, once (a repeated header: its last value, as before)
        length = fields.get(b"content-length")
        rid = accept_request_id(fields.get(b"x-request-id"))
        encoded = rid.encode("ascii")
        token = request_id.set(rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", encoded)]
            await send(message)

        try:
            if length is not None:
                try:
                    declared = int(length)
                except ValueError:
                    await send_error(send_with_id, 400, "bad_request", "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    message = f"request body over {self.max_bytes} bytes"
                    await send_error(send_with_id, 413, "payload_too_large", message)
                    return
            else:  # chunked: count what arrives (with a length, the server reads no more than declared)
                receive = self._counting(receive)
            inner_send: Send = send_with_id
            if self.security is not None and scope["path"] in OPTIONAL_AUTH_PATHS:
                authorization = fields.get(b"authorization")
                await self.security.identify(scope, None if authorization is None else authorization.decode("latin-1"))
            elif self.security is not None and protects(scope["path"]):
                origin, authorization = fields.get(b"origin"), fields.get(b"authorization")
                admitted = await self.security.admit(
                    scope,
                    send_with_id,
                    None if origin is None else origin.decode("latin-1"),
                    None if authorization is None else authorization.decode("latin-1"),
                )
                if admitted is None:
                    return
                scope, inner_send = admitted
            await self.app(scope, receive, inner_send)
        except _TooLarge:
            if not started:
                await send_error(send_with_id, 413, "payload_too_large", f"request body over {self.max_bytes} bytes")
        finally:
            request_id.reset(token)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        return counting_receive


class _TooLarge(Exception):
    pass


class HostGuard:
    """DNS-rebinding protection for every MCP endpoint, fast path included: when bound to a loopback address,
    a request whose Host is not local is refused (421). The verdict is `gateway.auth.middleware.host_guard`'s;
    it depends only on the Host header and the bound address, so it is asked once per such pair, not per
    request."""

    def __init__(self) -> None:
        self._verdicts: dict[tuple[bytes, Any], bool] = {}

    async def allows(self, scope: Scope) -> bool:
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        key = (host, scope.get("server"))
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = await self._ask(scope, host)
            if len(self._verdicts) > 1024:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    @staticmethod
    async def _ask(scope: Scope, host: bytes) -> bool:
        passed = False

        async def through(*_: Any) -> None:
            nonlocal passed
            passed = True

        async def discard(_message: Message) -> None:
            pass

        probe = {
            "type": "http",
            "path": scope["path"],
            "headers": [(b"host", host)],
            "server": scope.get("server"),
            "scheme": scope.get("scheme", "http"),
            "method": scope.get("method", "GET"),
            "query_string": b"",
        }
        await host_guard(through)(probe, _no_body, discard)
        return passed


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


_LABEL = re.compile(rb'(tool|backend|breaker)="([^"]*)"')


def _accepts_event_stream(scope: Scope) -> bool:
    """No Accept header, or one that admits `text/event-stream`."""
    accept = next((value for name, value in scope["headers"] if name == b"accept"), None)
    if accept is None:
        return True
    types = {part.split(b";")[0].strip().lower() for part in accept.split(b",")}
    return bool(types & {b"text/event-stream", b"text/*", b"*/*", b""})


def _visible_backends(hub: Hub, client: Client) -> set[str]:
    """The backends `client` can see: those with at least one tool its allow list lets it call."""
    return {route.backend.name for name, route in hub.catalog.routes.items() if client.matches(name)}


def _visible_metrics(body: bytes, client: Client, backends: set[str]) -> bytes:
    """The exposition without the samples of tools and backends hidden from `client`."""
    kept = []
    for line in body.split(b"\n"):
        for label, value in _LABEL.findall(line):
            name = value.decode(errors="replace")
            if label == b"tool" and name != "_unknown" and not client.matches(name):
                break
            if label != b"tool" and name.partition("/")[0] not in backends:
                break
        else:
            kept.append(line)
    return b"\n".join(kept)


def _visible_health(health: dict[str, Any], backends: set[str]) -> dict[str, Any]:
    """`/health` without the backends (and their breakers and bulkheads) hidden from the client."""
    health = dict(health)
    for section in ("backends", "bulkheads", "breakers"):
        if isinstance(health.get(section), dict):
            health[section] = {name: doc for name, doc in health[section].items() if name.partition("/")[0] in backends}
    return health


class GatewayHTTP:
    """Routes by path to the MCP transports and the operational endpoints."""

    def __init__(self, hub: Hub, front: FastMCP, mcp_handler: ASGIApp | None = None) -> None:
        self.hub = hub
        self.streamable = front.http_app(path=MCP_PATH, transport="http")
        self.sse = front.http_app(path=SSE_PATH, transport="sse")
        self.mcp_handler = mcp_handler or self.streamable
        self.redact: Callable[[str], str] | None = None  # scrubs secrets from /health's error texts
        self._exit_stack: AsyncExitStack | None = None
        self.hosts = HostGuard()

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == SSE_PATH and scope["method"] == "GET" and not _accepts_event_stream(scope):
            await send_error(send, 406, "not_acceptable", f"{SSE_PATH} answers with text/event-stream only")
            return
        if scope["path"].startswith((SSE_PATH, MESSAGE_PATH)):
            await self.sse(scope, receive, send)
        else:
            await self.mcp_handler(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        mcp = path in (MCP_PATH, MCP_PATH + "/", SSE_PATH) or path.startswith(MESSAGE_PATH)
        if mcp or path in ("/health", "/ready", "/metrics", "/status"):
            if not await self.hosts.allows(scope):  # DNS-rebinding protection, operational endpoints included
                await send_error(send, 421, "misdirected_request", "the Host of this request is not this server")
            elif mcp:
                await self._mcp(scope, receive, send)
            else:
                await self._ops(scope, receive, send)
        else:
            message = f"no endpoint at {path}; MCP is served at {MCP_PATH} and {SSE_PATH}"
            await send_error(send, 404, "not_found", message)

    async def _ops(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`/health`, `/ready`, `/metrics`, `/status`; an authenticated client sees only the backends and
        tools its allow list lets it see."""
        path: str = scope["path"]
        client = scope.get(CLIENT_SCOPE_KEY)
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(send, 405, "method_not_allowed", f"{path} answers GET only")
        elif path == "/health":
            health = self._health()
            if client is not None:
                health = _visible_health(health, _visible_backends(self.hub, client))
            await send_json(send, 200, health)
        elif path == "/status":
            await self._status(scope, send)
        elif path == "/ready":
            ready = self.hub.ready
            await send_json(send, 200 if ready else 503, {"ready": ready})
        else:
            body, content_type = metrics.render(self.hub.collector, self.hub.published.collector())
            if client is not None:
                body = _visible_metrics(body, client, _visible_backends(self.hub, client))
            headers = [(b"content-type", content_type.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def _health(self) -> dict[str, Any]:
        health = self.hub.health()
        redact = self.redact
        if redact is not None:  # every text a backend or its errors put there
            for backend in health["backends"].values():
                if backend.get("last_error"):
                    backend["last_error"] = redact(backend["last_error"])
                backend["reasons"] = [redact(reason) for reason in backend["reasons"]]
                published = backend.get("published")
                if published is not None:
                    published["problems"] = [redact(problem) for problem in published["problems"]]
                    if published["error"]:
                        published["error"] = redact(published["error"])
                    figures = published["figures"]
                    for name, value in figures.items():
                        if isinstance(value, str):
                            figures[name] = redact(value)
        return health

    async def _status(self, scope: Scope, send: Send) -> None:
        """The status page, as the caller's allow list (and profile) lets it see the gateway."""
        client: Client | None = scope.get(CLIENT_SCOPE_KEY)
        tools: dict[str, list[str]] = {backend.name: [] for backend in self.hub.backends}
        for route in self.hub.catalog.routes.values():
            tools[route.backend.name].append(route.exposed)
        page = status.render(self._health(), tools, self.hub.recent, client.matches if client else lambda _: True)
        body = page.encode()
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(self.streamable.router.lifespan_context(self.streamable))
                await stack.enter_async_context(self.sse.router.lifespan_context(self.sse))
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
                assert message["type"] == "lifespan.shutdown"
                self.hub.draining = True
                metrics.DRAINING.set(1)
        except Exception as error:
            await send({"type": "lifespan.startup.failed", "message": str(error)})
            return
        await send({"type": "lifespan.shutdown.complete"})


HEADER_TIMEOUT = 10.0
"""Seconds a connection may take to send a request's complete headers before it is closed (the default of
`gateway.header_timeout`)."""
HEADER_SWEEP = 1.0
"""Seconds between two looks at the connections still waiting for headers."""


class _OneWritePerTurn:
    """A connection's transport whose writes of one loop turn go out in one `write`: uvicorn writes a
    response's head and its body separately, two system calls (and, on loopback, the peer's receive path run
    twice in this process) for what is one small response. The first write of a turn is held until the next
    one, or the end of the turn (`call_soon`); `close` sends what is held first. Everything else is the
    transport's own."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self._flush)
        else:  # the body after the head (the flush due at the end of the turn finds nothing)
            self._held = None
            self._transport.write(held + data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _header_timeout_protocol(header_timeout: float = HEADER_TIMEOUT) -> type:
    """uvicorn's httptools protocol, closing a connection whose request headers are not complete within
    `header_timeout` seconds of its opening or of the request's first byte (uvicorn has no such timeout: a
    client could hold connections open forever by never finishing its headers). One timer looks at the open
    connections every `HEADER_SWEEP` seconds, so a request arms no timer of its own (a timer per request cost
    ~2 µs) and a slow one is closed up to `HEADER_SWEEP` seconds later. Idle keep-alive connections are
    closed by uvicorn's own `timeout_keep_alive`."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    connections: set[Any] = set()  # this server's open connections
    sweeper: list[asyncio.TimerHandle] = []  # the timer, while some connection is open

    def sweep(loop: asyncio.AbstractEventLoop) -> None:
        sweeper.clear()
        late = loop.time() - header_timeout
        for connection in list(connections):
            since = connection.headers_since
            if since is not None and since <= late and not connection.transport.is_closing():
                connection.transport.close()
        if connections:
            sweeper.append(loop.call_later(HEADER_SWEEP, sweep, loop))

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        headers_since: float | None = None  # loop time since when headers are awaited; None: not now

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(cast(asyncio.Transport, _OneWritePerTurn(transport, self.loop)))
            self.headers_since = self.loop.time()
            connections.add(self)
            if not sweeper:
                sweeper.append(self.loop.call_later(HEADER_SWEEP, sweep, self.loop))

        def connection_lost(self, exc: Exception | None) -> None:
            connections.discard(self)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.headers_since is None:
                self.headers_since = self.loop.time()

        def on_headers_complete(self) -> None:
            self.headers_since = None
            super().on_headers_complete()

    return HeaderTimeoutProtocol


async def serve_http(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    hub: Hub | None = None,
    drain_seconds: float = 0.0,
    shutdown_timeout: float = 10.0,
    header_timeout: float = HEADER_TIMEOUT,
    sock: socket.socket | None = None,
) -> None:
    """Run the app under uvicorn until cancelled, or until SIGTERM/SIGINT drains it (see gateway.ops.shutdown);
    on `sock` when given (already bound and listening), else on `host:port`."""
    import uvicorn

    from gateway.ops.shutdown import STREAM_GRACE_SECONDS, GracefulServer

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn logs through the gateway's handler, in its format (gateway.ops.logs)
        lifespan="on",
        access_log=False,  # the audit log has a line per call; an access line per request costs the hot path
        http=_header_timeout_protocol(header_timeout),
        timeout_graceful_shutdown=STREAM_GRACE_SECONDS if hub is not None else 10,
    )
    server = GracefulServer(config, hub, drain_seconds, shutdown_timeout) if hub is not None else uvicorn.Server(config)
    await server.serve(sockets=[sock] if sock is not None else None)
