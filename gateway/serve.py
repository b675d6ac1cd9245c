"""Wire and run the gateway: resolve the security settings once (keys, secrets, rate-limit buckets), build
the hub and the guard, and serve one client-facing transport."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from gateway.auth.keys import auth_enabled, load_keys
from gateway.auth.middleware import SecurityMiddleware
from gateway.config.loader import AuthSettings, GatewayConfig
from gateway.guard.audit import AuditLog
from gateway.guard.guard import Guard
from gateway.guard.ratelimit import Buckets, MemoryBuckets, make_buckets
from gateway.guard.redaction import Redactor, collect_secrets
from gateway.ops.asgi import ASGIApp
from gateway.ops.logs import BackendStderr
from gateway.ops.shutdown import stop_on_signal
from gateway.ops.tracing import NO_TRACING, CallHooks
from gateway.routing.hub import Hub
from gateway.routing.reload import Reloader
from gateway.transports import framework
from gateway.transports.fastpath import FastPath
from gateway.transports.front import build_front
from gateway.transports.http import GatewayHTTP, serve_http
from gateway.transports.profiles import profile_client, with_profiles
from gateway.transports.stdio import StdioFront
from gateway.transports.streamable import StreamableFront

logger = logging.getLogger("mcp_gateway")


@dataclass
class Security:
    """What `serve` needs: the resolved keys, the redactor, the buckets."""

    auth: AuthSettings | None
    keys: dict[str, str]
    redactor: Redactor
    audit: AuditLog
    redis_url: str | None = None
    redis_prefix: str = "mcp-gateway"
    _buckets: Buckets | None = None

    @property
    def enabled(self) -> bool:
        return auth_enabled(self.auth)

    def guard(self, hub: Hub, *, http: bool) -> Guard:
        if self._buckets is None:
            self._buckets = make_buckets(self.redis_url, self.redis_prefix) if self.enabled else MemoryBuckets()
        return Guard(
            hub,
            self.auth if http else None,
            self.redactor,
            self._buckets,
            require_client=http and self.enabled,
            audit=self.audit,
        )

    def middleware(self, app: ASGIApp) -> SecurityMiddleware:
        return SecurityMiddleware(app, self.auth, self.keys)


def load_security(
    config: GatewayConfig, file: str, environ: Mapping[str, str], raw_servers: Mapping[str, Any] | None = None
) -> Security:
    """Resolve keys and secrets once at start-up; a problem is a `ConfigError` (exit 2). The audit log is
    off until `gateway.guard.audit.setup_audit` turns it on."""
    auth = config.gateway.auth
    keys = load_keys(auth, file, environ) if auth is not None else {}
    redactor = Redactor(collect_secrets(config, raw_servers, environ))
    audit = AuditLog(config.gateway.audit.arguments, redactor)
    return Security(auth, keys, redactor, audit, config.gateway.redis_url, config.gateway.redis.prefix)


def build_http_app(hub: Hub, security: Security | None = None) -> GatewayHTTP:
    """The ASGI app: FastMCP's transports with the fast path in front of `/mcp`."""
    guard = security.guard(hub, http=True) if security is not None else None
    front, tracker = build_front(hub, guard)
    hub.add_listener(tracker.announce_tools_changed)
    app = GatewayHTTP(hub, front)
    if security is not None:
        app.redact = security.redactor
    streamable = app.streamable
    app.mcp_handler = StreamableFront(FastPath(hub, guard), streamable, framework.session_ids(streamable))
    return app


async def serve(
    config: GatewayConfig,
    transport: str,
    host: str,
    port: int,
    security: Security,
    *,
    json_logs: bool = False,
    tracer: CallHooks = NO_TRACING,
    stderr: BackendStderr | None = None,
    profile: str | None = None,
    config_file: str | None = None,
) -> None:
    """Start the backends, then serve clients until cancelled, stdin closes, or SIGTERM/SIGINT drains the
    gateway (gateway.ops.shutdown); leaving closes every backend session. Over stdio, `profile` narrows the
    tools to that profile's (over HTTP each profile has its own endpoints). With `config_file`, changes to
    that file (or SIGHUP) reload the server list live (gateway.routing.reload)."""
    hub = Hub(config, tracer, stderr)
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
        if config_file is not None:
            group.start_soon(Reloader(hub, config_file).watch)
        if transport == "stdio":
            guard = security.guard(hub, http=False)
            if profile is not None:
                guard.default_client = profile_client(settings.profiles, profile)
            front, _tracker = build_front(hub, guard)
            stdio = StdioFront(front, FastPath(hub, guard), settings.max_body_bytes)
            hub.add_listener(stdio.announce_tools_changed)
            await stdio.serve()
        else:
            app = build_http_app(hub, security)
            logger.info("serving MCP on http://%s:%d/mcp (SSE at /sse)", host, port)
            watcher.cancel()  # from here uvicorn's handlers take the signals (GracefulServer)
            await anyio.lowlevel.checkpoint()
            served = with_profiles(app, security.middleware, settings.profiles)
            await serve_http(
                served,
                host,
                port,
                settings.max_body_bytes,
                hub=hub,
                drain_seconds=settings.drain_seconds,
                shutdown_timeout=settings.shutdown_timeout,
                json_logs=json_logs,
            )
        group.cancel_scope.cancel()
    logger.info("shutdown: backends closed")
