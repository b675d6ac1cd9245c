"""Run the gateway: the hub's backends plus one client-facing transport."""

from __future__ import annotations

import logging
from collections.abc import Container

import anyio

from gateway.config import GatewayConfig
from gateway.fastpath import FastPath
from gateway.front import build_front
from gateway.http import GatewayHTTP, serve_http
from gateway.hub import Hub
from gateway.security import Security, load_security
from gateway.shutdown import stop_on_signal
from gateway.stdio import StdioFront
from gateway.streamable import StreamableFront

logger = logging.getLogger("mcp_gateway")


def build_http_app(hub: Hub, security: Security | None = None) -> GatewayHTTP:
    """The ASGI app: FastMCP's transports with the fast path in front of `/mcp`."""
    guard = security.guard(hub, http=True) if security is not None else None
    front, tracker = build_front(hub, guard)
    hub.add_listener(tracker.announce_tools_changed)
    app = GatewayHTTP(hub, front)
    if security is not None:
        app.redact = security.redactor
    streamable = app.streamable

    # FastMCP keeps the session manager (created by the app's lifespan) on the route's ASGI endpoint.
    holders = [streamable, *(getattr(route, "endpoint", None) for route in streamable.routes)]
    holders += [getattr(holder, "app", None) for holder in holders]

    def session_ids() -> Container[str]:
        for holder in holders:
            manager = getattr(holder, "session_manager", None)
            if manager is not None:
                return manager._server_instances
        return ()

    app.mcp_handler = StreamableFront(FastPath(hub, guard), streamable, session_ids)
    return app


async def serve(
    config: GatewayConfig,
    transport: str,
    host: str,
    port: int,
    security: Security | None = None,
    *,
    json_logs: bool = False,
) -> None:
    """Start the backends, then serve clients until cancelled, stdin closes, or SIGTERM/SIGINT drains the
    gateway (gateway.shutdown); leaving closes every backend session."""
    security = security or load_security(config, "config")
    hub = Hub(config)
    settings = config.gateway
    stdio: StdioFront | None = None
    async with anyio.create_task_group() as group:

        def on_signal() -> None:
            if stdio is not None:
                stdio.stop()  # serving stdio: finish the calls in flight, then leave
            else:
                group.cancel_scope.cancel()  # still starting: nothing to drain

        watcher = anyio.CancelScope()

        async def watch_signals() -> None:
            with watcher:
                await stop_on_signal(on_signal)

        group.start_soon(watch_signals)
        await group.start(hub.run)
        if transport == "stdio":
            guard = security.guard(hub, http=False)
            front, _tracker = build_front(hub, guard)
            stdio = StdioFront(front, FastPath(hub, guard), settings.max_body_bytes)
            hub.add_listener(stdio.announce_tools_changed)
            await stdio.serve()
        else:
            app = build_http_app(hub, security)
            logger.info("serving MCP on http://%s:%d/mcp (SSE at /sse)", host, port)
            watcher.cancel()  # from here uvicorn's handlers take the signals (GracefulServer)
            await anyio.lowlevel.checkpoint()
            await serve_http(
                security.middleware(app), host, port, settings.max_body_bytes, hub=hub,
                drain_seconds=settings.drain_seconds, shutdown_timeout=settings.shutdown_timeout, json_logs=json_logs,
            )
        group.cancel_scope.cancel()
    logger.info("shutdown: backends closed")
