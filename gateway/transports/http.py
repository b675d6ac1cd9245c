"""The HTTP side of the gateway: one ASGI app serving Streamable HTTP at `/mcp`, the legacy HTTP+SSE
transport at `/sse` (posting to `/messages/`), and `/health`, `/ready`, `/metrics`, `/status` (the page for people)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from fastmcp import FastMCP

from gateway.auth.middleware import CLIENT_SCOPE_KEY, host_guard
from gateway.guard.clients import Client
from gateway.ops import metrics, status
from gateway.ops.asgi import ASGIApp, Message, Receive, Scope, Send, send_error, send_json
from gateway.routing.hub import Hub

MCP_PATH = "/mcp"
SSE_PATH = "/sse"
MESSAGE_PATH = "/messages/"


class BodyLimit:
    """Reject request bodies over `max_bytes` with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, "bad_request", "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    await send_error(send, 413, "payload_too_large", f"request body over {self.max_bytes} bytes")
                    return
        received = 0
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not started:
                await send_error(send, 413, "payload_too_large", f"request body over {self.max_bytes} bytes")


class _TooLarge(Exception):
    pass


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
        self.guarded = host_guard(self._mcp)  # DNS-rebinding protection for every MCP endpoint
        self.ops_guarded = host_guard(self._ops)  # and for /health, /ready, /metrics

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
        if path in (MCP_PATH, MCP_PATH + "/", SSE_PATH) or path.startswith(MESSAGE_PATH):
            await self.guarded(scope, receive, send)
        elif path in ("/health", "/ready", "/metrics", "/status"):
            await self.ops_guarded(scope, receive, send)
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
            body, content_type = metrics.render(self.hub.collector)
            if client is not None:
                body = _visible_metrics(body, client, _visible_backends(self.hub, client))
            headers = [(b"content-type", content_type.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def _health(self) -> dict[str, Any]:
        health = self.hub.health()
        if self.redact is not None:
            for backend in health["backends"].values():
                if backend.get("last_error"):
                    backend["last_error"] = self.redact(backend["last_error"])
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
"""Seconds a connection may take to send a request's complete headers before it is closed."""


def _header_timeout_protocol() -> type:
    """uvicorn's httptools protocol, closing a connection whose request headers are not complete within
    `HEADER_TIMEOUT` seconds of its opening or of the request's first byte (uvicorn has no such timeout: a
    client could hold connections open forever by never finishing its headers). Idle keep-alive connections
    are closed by uvicorn's own `timeout_keep_alive`."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT, self._headers_timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

    return HeaderTimeoutProtocol


async def serve_http(
    app: ASGIApp,
    host: str,
    port: int,
    max_body_bytes: int,
    *,
    hub: Hub | None = None,
    drain_seconds: float = 0.0,
    shutdown_timeout: float = 10.0,
    json_logs: bool = False,
    sock: socket.socket | None = None,
) -> None:
    """Run the app under uvicorn until cancelled, or until SIGTERM/SIGINT drains it (see gateway.ops.shutdown);
    on `sock` when given (already bound and listening), else on `host:port`."""
    import uvicorn

    from gateway.ops.logs import RequestId
    from gateway.ops.shutdown import STREAM_GRACE_SECONDS, GracefulServer

    config = uvicorn.Config(
        RequestId(BodyLimit(app, max_body_bytes)),
        host=host,
        port=port,
        log_level="warning",
        log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,  # None: uvicorn logs through ours
        lifespan="on",
        http=_header_timeout_protocol(),
        timeout_graceful_shutdown=STREAM_GRACE_SECONDS if hub is not None else 10,
    )
    server = GracefulServer(config, hub, drain_seconds, shutdown_timeout) if hub is not None else uvicorn.Server(config)
    await server.serve(sockets=[sock] if sock is not None else None)
