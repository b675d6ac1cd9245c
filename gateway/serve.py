"""Wire and run the gateway: resolve the security settings once (keys, secrets, rate-limit buckets), build
the hub and the guard, and serve one client-facing transport."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from gateway.auth.keys import auth_enabled, load_keys
from gateway.config.loader import AuthSettings, ConfigError, GatewayConfig, raw_servers
from gateway.guard.audit import AuditLog
from gateway.guard.redaction import Redactor, collect_secrets

# Only what `load_security` needs is imported here: the CLI's `check`, `tools` and `call` use it and nothing
# else of this module, so the transports (FastMCP's server, uvicorn, Starlette) and the hub load in `serve`.
if TYPE_CHECKING:
    from gateway.auth.middleware import SecurityMiddleware
    from gateway.guard.guard import Guard
    from gateway.guard.ratelimit import Buckets
    from gateway.ops.asgi import ASGIApp
    from gateway.ops.logs import BackendStderr
    from gateway.ops.tracing import CallHooks
    from gateway.routing.hub import Hub
    from gateway.routing.reload import Commit, Prepare
    from gateway.transports.http import GatewayHTTP
    from gateway.transports.profiles import ProfileEndpoints
    from gateway.transports.stdio import StdioFront

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
    _guards: list[Guard] = field(default_factory=list)  # what a config reload updates
    _middlewares: list[SecurityMiddleware] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return auth_enabled(self.auth)

    def guard(self, hub: Hub, *, http: bool) -> Guard:
        from gateway.guard.guard import Guard
        from gateway.guard.ratelimit import MemoryBuckets, make_buckets

        if self._buckets is None:
            self._buckets = make_buckets(self.redis_url, self.redis_prefix) if self.enabled else MemoryBuckets()
        guard = Guard(
            hub,
            self.auth if http else None,
            self.redactor,
            self._buckets,
            require_client=http and self.enabled,
            audit=self.audit,
        )
        self._guards.append(guard)
        return guard

    def middleware(self, app: ASGIApp) -> SecurityMiddleware:
        from gateway.auth.middleware import SecurityMiddleware

        middleware = SecurityMiddleware(app, self.auth, self.keys)
        self._middlewares.append(middleware)
        return middleware

    def update(self, fresh: Security) -> None:
        """Take a reloaded config's keys, clients, origins and secrets (`fresh`, from `load_security`) in
        every guard and middleware made so far; authentication stays on or off (a restart changes that)."""
        self.auth, self.keys = fresh.auth, fresh.keys
        self.redactor.update(fresh.redactor.secrets)  # the one redactor: logs, stderr, audit, /health
        for middleware in self._middlewares:
            middleware.reconfigure(fresh.auth, fresh.keys)
        for guard in self._guards:
            guard.reconfigure(fresh.auth if guard.auth is not None else None)


def load_security(
    config: GatewayConfig, file: str, environ: Mapping[str, str], raw_servers: Mapping[str, Any] | None = None
) -> Security:
    """Resolve keys and secrets once at start-up; a problem is a `ConfigError` (exit 2). The audit log is
    off until `gateway.guard.audit.setup_audit` turns it on."""
    auth = config.gateway.auth
    if auth is not None:
        from gateway.auth.middleware import parse_allowed_origins

        try:
            parse_allowed_origins(auth.allowed_origins)
        except ValueError as error:
            raise ConfigError(file, "gateway.auth.allowed_origins", str(error)) from None
    keys = load_keys(auth, file, environ) if auth is not None else {}
    redactor = Redactor(collect_secrets(config, raw_servers, environ))
    audit = AuditLog(config.gateway.audit.arguments, redactor)
    return Security(auth, keys, redactor, audit, config.gateway.redis_url, config.gateway.redis.prefix)


class BindError(Exception):
    """The HTTP address cannot be served (invalid, or in use): one line naming the address and the problem."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port`, made before any backend starts so a bad address fails at once."""
    where = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    if not 0 < port < 65536:
        raise BindError(f"cannot serve on {where}: the port must be between 1 and 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as error:
        raise BindError(f"cannot serve on {where}: the host does not resolve ({error})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        problem = "the address is already in use" if error.errno == errno.EADDRINUSE else error.strerror or error
        raise BindError(f"cannot serve on {where}: {problem}") from None
    sock.set_inheritable(True)
    return sock


def reload_hook(
    security: Security,
    file: str,
    *,
    endpoints: ProfileEndpoints | None = None,
    stdio: Guard | None = None,
    profile: str | None = None,
) -> Prepare:
    """The config reload's check and commit for what `serve` wires above the hub: keys and allow lists,
    secrets to redact, the profiles (over HTTP `endpoints`; over stdio `--profile`'s client of `stdio`)."""
    from gateway.transports.profiles import profile_client

    def prepare(config: GatewayConfig, environ: Mapping[str, str]) -> Commit:
        fresh = load_security(config, file, environ, raw_servers(file))
        if fresh.enabled != security.enabled:
            problem = "authentication cannot be turned on or off by a reload: restart the gateway"
            raise ConfigError(file, "$.gateway.auth", problem)
        profiles = config.gateway.profiles
        if profile is not None and profile not in profiles:
            raise ConfigError(file, "$.gateway.profiles", f"profile {profile!r} is being served (--profile)")

        def commit() -> None:
            security.update(fresh)
            if endpoints is not None:
                endpoints.use(profiles)
            if stdio is not None and profile is not None:
                stdio.default_client = profile_client(profiles, profile)

        return commit

    return prepare


def build_http_app(hub: Hub, security: Security | None = None) -> GatewayHTTP:
    """The ASGI app: FastMCP's transports with the fast path in front of `/mcp`."""
    from gateway.transports import framework
    from gateway.transports.fastpath import FastPath
    from gateway.transports.front import build_front
    from gateway.transports.http import GatewayHTTP
    from gateway.transports.streamable import StreamableFront

    guard = security.guard(hub, http=True) if security is not None else None
    front, tracker = build_front(hub, guard)
    hub.add_listener(tracker.announce_tools_changed)
    app = GatewayHTTP(hub, front)
    if security is not None:
        app.redact = security.redactor
    streamable = app.streamable
    auth = security.auth if security is not None and security.enabled else None
    per_client = auth.max_sessions_per_client if auth is not None else None
    app.mcp_handler = StreamableFront(FastPath(hub, guard), streamable, framework.session_ids(streamable), per_client)
    return app


async def serve(
    config: GatewayConfig,
    transport: str,
    host: str,
    port: int,
    security: Security,
    *,
    tracer: CallHooks | None = None,
    stderr: BackendStderr | None = None,
    profile: str | None = None,
    config_file: str | None = None,
    started: Callable[[], None] | None = None,
) -> None:
    """Start the backends, then serve clients until cancelled, stdin closes, or SIGTERM/SIGINT drains the
    gateway (gateway.ops.shutdown); leaving closes every backend session. Over stdio, `profile` narrows the
    tools to that profile's (over HTTP each profile has its own endpoints). With `config_file`, changes to
    that file (or SIGHUP) reload the server list live (gateway.routing.reload). `started` is called once
    every backend is up or has failed its first start (the CLI ends its start-up there).

    The stdio backends' children are started before the MCP stack (FastMCP, the SDK, uvicorn, the hub) is
    imported, so their imports run on the other core while the gateway's do; each backend adopts its own."""
    from gateway.backends import spawn

    listening = bind(host, port) if transport != "stdio" else None  # before any backend starts
    spawned = await spawn.start_all(config, stderr or (lambda _name: None))
    try:
        from gateway.backends.era import ClientEra
        from gateway.ops.shutdown import stop_on_signal
        from gateway.ops.tracing import NO_TRACING
        from gateway.routing.hub import Hub
        from gateway.routing.reload import Reloader
        from gateway.transports.fastpath import FastPath
        from gateway.transports.front import build_front
        from gateway.transports.http import HTTPEntry, serve_http
        from gateway.transports.profiles import ProfileEndpoints, profile_client
        from gateway.transports.stdio import StdioFront

        # over stdio there is one client: the backends speak its protocol era (gateway.backends.era)
        era = ClientEra() if transport == "stdio" else None
        hub = Hub(config, tracer or NO_TRACING, stderr, era=era)
        for backend in hub.backends:
            if backend.name in spawned:
                backend.adopt(spawned.pop(backend.name))
    finally:
        with anyio.CancelScope(shield=True):
            await spawn.reap(spawned)  # those no backend took: none, unless the hub could not be built
    settings = config.gateway
    stdio: StdioFront | None = None
    async with anyio.create_task_group() as group:

        def on_signal() -> None:
            if stdio is not None:
                stdio.stop()  # serving stdio: finish the calls in flight, then leave
            else:
                group.cancel_scope.cancel()  # not serving yet: nothing to drain

        group.start_soon(hub.run)  # answer at once: backends join the catalog as they come up
        if started is not None:
            group.start_soon(_call_when_started, hub, started)
        if transport == "stdio":
            group.start_soon(stop_on_signal, on_signal)
            guard = security.guard(hub, http=False)
            if profile is not None:
                guard.default_client = profile_client(settings.profiles, profile)
            front, _tracker = build_front(hub, guard)
            stdio = StdioFront(front, FastPath(hub, guard), settings.max_body_bytes, era)
            hub.add_listener(stdio.announce_tools_changed)
            if config_file is not None:
                hook = reload_hook(security, config_file, stdio=guard, profile=profile)
                group.start_soon(Reloader(hub, config_file, prepare=hook).watch)
            await stdio.serve()
        else:
            app = build_http_app(hub, security)
            logger.info("serving MCP on http://%s:%d/mcp (SSE at /sse)", host, port)
            # one pass without profiles (request id, body limit, Origin and authentication); with profiles,
            # their endpoints keep their own layers around authentication
            entry = HTTPEntry(app, None, settings.max_body_bytes)
            endpoints = ProfileEndpoints(entry, app, security.middleware)
            endpoints.use(settings.profiles)
            if config_file is not None:
                hook = reload_hook(security, config_file, endpoints=endpoints)
                group.start_soon(Reloader(hub, config_file, prepare=hook).watch)
            # uvicorn's handlers take the signals (GracefulServer) from the start: it serves at once
            await serve_http(
                entry,
                host,
                port,
                hub=hub,
                sock=listening,
                drain_seconds=settings.drain_seconds,
                shutdown_timeout=settings.shutdown_timeout,
                header_timeout=settings.header_timeout,
            )
        await anyio.to_thread.run_sync(security.audit.flush)  # every call's line, before the backends close
        group.cancel_scope.cancel()
    logger.info("shutdown: backends closed")


async def _call_when_started(hub: Hub, started: Callable[[], None]) -> None:
    await hub.started.wait()
    started()
