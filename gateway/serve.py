"""Run the gateway: the hub's backends plus one client-facing transport."""

from __future__ import annotations

import logging

import anyio

from gateway.config import GatewayConfig
from gateway.front import build_front
from gateway.http import GatewayHTTP, serve_http
from gateway.hub import Hub

logger = logging.getLogger("mcp_gateway")


async def serve(config: GatewayConfig, transport: str, host: str, port: int) -> None:
    """Start the backends, then serve clients until cancelled."""
    hub = Hub(config)
    front, _tracker = build_front(hub)
    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        if transport == "stdio":
            await front.run_stdio_async(show_banner=False)
        else:
            app = GatewayHTTP(hub, front)
            logger.info("serving MCP on http://%s:%d/mcp (SSE at /sse)", host, port)
            await serve_http(app, host, port, config.gateway.max_body_bytes)
        group.cancel_scope.cancel()
