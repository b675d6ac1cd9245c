"""Security of the gateway's HTTP transports: bearer-token and JWT authentication, per-client tool
allow/deny lists, Origin validation, per-client rate limits, memory isolation, secret redaction and
the audit log. See docs/security.md for the model.

The pieces:

* `Keys` resolves every client's token hashes (config, `MCP_GATEWAY_TOKEN_<CLIENT>`, `tokens_file`).
* `SecurityMiddleware` (ASGI, in front of `/mcp`, `/sse`, `/messages/`, `/metrics`) rejects a bad
  Origin (403) and a missing or unknown bearer token (401), and puts the authenticated `Client` into
  the ASGI scope under `CLIENT_SCOPE_KEY` (and `scope["user"]`, so FastMCP's `get_access_token()`
  sees it too).
* `Guard` is what both front paths call instead of `hub.call_tool`: authorization (a tool the client
  may not use is answered exactly like an unknown tool), the rate limit, memory namespacing,
  redaction of error texts, and one audit line.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway import metrics
from gateway.config import (
    AuditSettings,
    AuthSettings,
    ConfigError,
    GatewayConfig,
    RateLimitConfig,
    normalize_token_hash,
)
from gateway.http import ASGIApp, Receive, Scope, Send, send_error
from gateway.hub import Hub, tool_error
from gateway.redaction import Redactor, audit_log, collect_secrets
from gateway.sessions import SessionOwners

logger = logging.getLogger("mcp_gateway.security")

CLIENT_SCOPE_KEY = "mcp_gateway.client"
TOKEN_ENV_PREFIX = "MCP_GATEWAY_TOKEN_"
RETRY_AFTER_META = "mcp-gateway/retryAfterSeconds"

def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in config for a bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (what `serve` may bind without auth)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------- clients


@dataclass(eq=False)
class Client:
    """An authenticated caller and what it may do."""

    name: str
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    rate_limit: RateLimitConfig | None = None
    memory_owner: str = ""
    _version: int = field(default=-1, repr=False)
    _tools: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _permitted: dict[str, bool] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # `!pattern` in `allow` is a deny entry
        self.deny = (*self.deny, *(p[1:] for p in self.allow if p.startswith("!")))
        self.allow = tuple(p for p in self.allow if not p.startswith("!"))
        self.memory_owner = self.memory_owner or self.name

    def matches(self, tool: str) -> bool:
        return any(fnmatchcase(tool, p) for p in self.allow) and not any(fnmatchcase(tool, p) for p in self.deny)

    def sync(self, hub: Hub) -> None:
        catalog = hub.catalog
        if catalog.version != self._version:
            self._permitted = {name: self.matches(name) for name in catalog.routes}
            self._tools = [tool for tool in catalog.tools if self._permitted.get(tool["name"])]
            self._version = catalog.version

    def permits(self, hub: Hub, tool: str) -> bool:
        self.sync(hub)
        return self._permitted.get(tool, False)

    def tools(self, hub: Hub) -> list[dict[str, Any]]:
        self.sync(hub)
        return self._tools


def make_client(name: str, auth: AuthSettings, template: str | None = None) -> Client:
    """The `Client` for `name`, with the policy of the config entry `template` (default: `name`)."""
    entry = auth.clients[template or name]
    return Client(
        name=name,
        allow=tuple(entry.allow),
        deny=tuple(entry.deny),
        rate_limit=entry.rate_limit or auth.rate_limit,
        memory_owner=entry.memory_owner or "",
    )


def load_keys(auth: AuthSettings, file: str, environ: Mapping[str, str]) -> dict[str, str]:
    """token hash -> client name, from config, `MCP_GATEWAY_TOKEN_<CLIENT>` env variables and `tokens_file`."""
    sources: list[tuple[str, str, str]] = []  # (hash, client, where)
    for name, entry in auth.clients.items():
        for digest in entry.hashes:
            sources.append((digest, name, f"$.gateway.auth.clients.{name}.token_sha256"))
        variable = TOKEN_ENV_PREFIX + name.upper().replace("-", "_")
        for item in filter(None, (part.strip() for part in environ.get(variable, "").split(","))):
            try:
                sources.append((normalize_token_hash(item), name, f"env {variable}"))
            except ValueError as error:
                raise ConfigError(file, f"env {variable}", str(error)) from None
    if auth.tokens_file:
        where = f"$.gateway.auth.tokens_file ({auth.tokens_file})"
        try:
            document = json.loads(Path(auth.tokens_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(file, where, f"cannot read a JSON object: {error}") from None
        if not isinstance(document, dict):
            raise ConfigError(file, where, "must hold a JSON object {client: hash or [hashes]}")
        for name, value in document.items():
            if name not in auth.clients:
                raise ConfigError(file, where, f"client {name!r} is not in gateway.auth.clients")
            for item in [value] if isinstance(value, str) else value if isinstance(value, list) else [None]:
                try:
                    sources.append((normalize_token_hash(str(item)), name, where))
                except ValueError as error:
                    raise ConfigError(file, f"{where}.{name}", str(error)) from None
    keys: dict[str, str] = {}
    for digest, name, where in sources:
        if keys.setdefault(digest, name) != name:
            raise ConfigError(file, where, f"the same token hash is given to clients {keys[digest]!r} and {name!r}")
    if auth.jwt is None:
        keyless = sorted(set(auth.clients) - set(keys.values()))
        if keyless:
            variable = TOKEN_ENV_PREFIX + keyless[0].upper().replace("-", "_")
            raise ConfigError(
                file, f"$.gateway.auth.clients.{keyless[0]}",
                f"no token: set token_sha256, env {variable} or tokens_file (make one with `mcp-gateway hash-token`)",
            )
    return keys


def auth_enabled(auth: AuthSettings | None) -> bool:
    return auth is not None and (bool(auth.clients) or auth.jwt is not None)


# ---------------------------------------------------------------------------------------------- authentication


class Authenticator:
    """Bearer token -> `Client`: static API keys by hash, else a JWT when configured."""

    def __init__(self, auth: AuthSettings, keys: dict[str, str]) -> None:
        self.auth = auth
        self.keys = {digest: (digest, name) for digest, name in keys.items()}
        self.clients = {name: make_client(name, auth) for name in auth.clients}
        self._jwt_clients: dict[str, Client] = {}
        self.verifier: Any = None
        if auth.jwt is not None:
            from fastmcp.server.auth.providers.jwt import JWTVerifier

            jwt = auth.jwt
            self.verifier = JWTVerifier(
                public_key=jwt.public_key, jwks_uri=jwt.jwks_uri, issuer=jwt.issuer, audience=jwt.audience,
                algorithm=jwt.algorithm, required_scopes=jwt.required_scopes or None,
            )

    async def authenticate(self, token: str) -> Client | None:
        digest = hash_token(token)
        entry = self.keys.get(digest)
        # The lookup is by the hash of the presented token, so its timing tells nothing about a
        # valid token; the final comparison is constant-time all the same.
        if entry is not None and hmac.compare_digest(entry[0], digest):
            return self.clients[entry[1]]
        if self.verifier is None or token.count(".") != 2:
            return None
        access = await self.verifier.verify_token(token)
        if access is None:
            return None
        jwt = self.auth.jwt
        assert jwt is not None
        claim = access.claims.get(jwt.client_claim) if jwt.client_claim else access.client_id
        if not isinstance(claim, str) or not claim:
            return None
        if claim in self.clients:
            return self.clients[claim]
        if jwt.default_client is None:
            return None
        client = self._jwt_clients.get(claim)
        if client is None:
            if len(self._jwt_clients) > 10_000:
                self._jwt_clients.clear()
            client = self._jwt_clients[claim] = make_client(claim, self.auth, jwt.default_client)
        return client


def _origin_allowed(origin: str, patterns: tuple[str, ...]) -> bool:
    origin = origin.strip().rstrip("/").lower()
    try:
        parts = urlsplit(origin)
        if parts.hostname is None or parts.path or parts.query:
            return False
        if parts.port is None:
            origin = f"{origin}:{443 if parts.scheme == 'https' else 80}"
    except ValueError:
        return False
    return any(pattern == "*" or fnmatchcase(origin, pattern) for pattern in patterns)


def _normalize_pattern(pattern: str) -> str:
    pattern = pattern.strip().rstrip("/").lower()
    if pattern == "*" or pattern.endswith(":*"):
        return pattern
    try:
        parts = urlsplit(pattern)
        if parts.port is None and parts.scheme in ("http", "https"):
            return f"{pattern}:{443 if parts.scheme == 'https' else 80}"
    except ValueError:
        pass
    return pattern


PROTECTED_PATHS = frozenset({"/mcp", "/mcp/", "/sse", "/metrics"})
MESSAGES_PREFIX = "/messages/"


class SecurityMiddleware:
    """Origin check and bearer authentication in front of the MCP endpoints and `/metrics`."""

    def __init__(self, app: ASGIApp, auth: AuthSettings | None, keys: dict[str, str] | None = None) -> None:
        self.app = app
        origins = auth.allowed_origins if auth is not None else AuthSettings().allowed_origins
        self.origins = tuple(_normalize_pattern(p) for p in origins)
        self.authenticator = Authenticator(auth, keys or {}) if auth is not None and auth_enabled(auth) else None
        self.sessions = SessionOwners() if self.authenticator is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path not in PROTECTED_PATHS and not path.startswith(MESSAGES_PREFIX):
            await self.app(scope, receive, send)
            return
        origin = authorization = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        if origin is not None and not _origin_allowed(origin, self.origins):
            await send_error(send, 403, "forbidden_origin", "the Origin of this request is not allowed", [])
            return
        if self.authenticator is not None:
            client = None
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                client = await self.authenticator.authenticate(token.strip())
            if client is None:
                challenge = 'Bearer realm="mcp-gateway"'
                if authorization:
                    challenge += ', error="invalid_token", error_description="the token is not valid"'
                message = "a valid bearer token is required (Authorization: Bearer <token>)"
                await send_error(send, 401, "unauthorized", message, [(b"www-authenticate", challenge.encode())])
                return
            scope[CLIENT_SCOPE_KEY] = client
            scope["user"] = _authenticated_user(client)
            if self.sessions is not None and path.startswith("/mcp"):
                scope = self.sessions.guard(scope, client.name)
                send = self.sessions.learning(scope, client.name, send)
        await self.app(scope, receive, send)


def _authenticated_user(client: Client) -> Any:
    from fastmcp.server.auth.auth import AccessToken
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

    return AuthenticatedUser(AccessToken(token="[REDACTED]", client_id=client.name, scopes=[]))


def current_client() -> Client | None:
    """The authenticated client of the HTTP request that carried the current MCP message (FastMCP path)."""
    from fastmcp.server.dependencies import get_http_request

    try:
        request = get_http_request()
    except RuntimeError:
        return None
    return request.scope.get(CLIENT_SCOPE_KEY)


# ---------------------------------------------------------------------------------------------- rate limits


class MemoryBuckets:
    """In-process token buckets."""

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, per_second: float, capacity: int) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        tokens, updated = self.buckets.get(key, (float(capacity), now))
        tokens = min(float(capacity), tokens + (now - updated) * per_second)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1 - tokens) / per_second


_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """Token buckets shared by every replica through Redis (one atomic Lua script per call)."""

    def __init__(self, url: str, prefix: str = "mcp-gateway") -> None:
        from gateway.resilience.redis_link import connect

        self.client = connect(url, timeout=1)  # a `redis+cluster://` URL: RedisCluster (one key: one slot)
        self.prefix = prefix  # `gateway.redis.prefix`: deployments sharing a Redis keep their own buckets
        self.script = self.client.register_script(_BUCKET_LUA)
        self.fallback = MemoryBuckets()
        self._warned = 0.0

    async def take(self, key: str, per_second: float, capacity: int) -> float:
        try:
            wait = await self.script(keys=[f"{self.prefix}:ratelimit:{{{key}}}"], args=[per_second, capacity])
            return float(wait)
        except Exception as error:  # Redis away: limit per replica rather than not at all
            if time.monotonic() - self._warned > 30:
                self._warned = time.monotonic()
                logger.warning("rate limits fall back to in-process buckets: redis: %s", error)
            return await self.fallback.take(key, per_second, capacity)


def make_buckets(url: str | None, prefix: str = "mcp-gateway") -> MemoryBuckets | RedisBuckets:
    return RedisBuckets(url, prefix) if url else MemoryBuckets()


# ---------------------------------------------------------------------------------------------- the guard


_MEMORY_BY_ID = frozenset({"get_memory", "update_memory", "delete_memory"})


class Guard:
    """Every tool call of a front transport goes through `call_tool` here."""

    def __init__(
        self,
        hub: Hub,
        auth: AuthSettings | None = None,
        redactor: Redactor | None = None,
        buckets: MemoryBuckets | RedisBuckets | None = None,
        *,
        require_client: bool = False,
        audit_arguments: bool = False,
    ) -> None:
        self.hub = hub
        self.auth = auth
        self.redactor = redactor or Redactor()
        self.buckets = buckets or MemoryBuckets()
        self.require_client = require_client  # HTTP with auth: no client means refuse
        self.audit_arguments = audit_arguments
        memory = auth.memory if auth is not None else None
        self.memory_servers = frozenset(memory.servers) if memory is not None and memory.isolate else frozenset()
        self.shared_namespaces = tuple(memory.shared_namespaces) if memory is not None else ()
        self._second, self._stamp = 0, ""
        self._quoted: dict[str, str] = {}

    def tools(self, client: Client | None) -> list[dict[str, Any]]:
        if client is None:
            return [] if self.require_client else self.hub.catalog.tools
        return client.tools(self.hub)

    def permits(self, client: Client | None, name: str) -> bool:
        if client is None:
            return not self.require_client
        return client.permits(self.hub, name)

    def shows(self, client: Client | None, exposed: str) -> bool:
        """Whether `client` may see a backend's prompt or resource, by its exposed name
        (`<server>_<name>`): the same allow/deny patterns as for tools."""
        if client is None:
            return not self.require_client
        return client.matches(exposed)

    async def call_tool(
        self,
        client: Client | None,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        meta: dict[str, Any] | None = None,
        on_progress: Any = None,
    ) -> dict[str, Any]:
        """Authorize, rate-limit, route through the hub, scrub an error, write the audit line."""
        began = time.perf_counter()
        outcome = "exception"
        try:
            result, outcome = await self._call(client, name, arguments, meta, on_progress)
            if result.get("isError"):
                self.redactor.result(result)
            return result
        finally:
            if audit_log.enabled:
                self._audit(client, name, outcome, began, arguments)

    async def _call(
        self, client: Client | None, name: str, arguments: dict[str, Any] | None, meta: Any, on_progress: Any
    ) -> tuple[dict[str, Any], str]:
        if not self.permits(client, name):
            metrics.CALLS.labels("_unknown", "unknown_tool").inc()
            return tool_error(f"Unknown tool: '{name}'"), "denied"  # exactly what an unknown tool gets
        if client is None:
            result = await self.hub.call_tool(name, arguments, meta=meta, on_progress=on_progress)
            return result, "error" if result.get("isError") else "ok"
        if client.rate_limit is not None:
            limit = client.rate_limit
            wait = await self.buckets.take(client.name, limit.per_minute / 60, limit.capacity)
            if wait > 0:
                metrics.CALLS.labels(name, "rate_limited").inc()
                seconds = math.ceil(wait * 10) / 10
                result = tool_error(f"Rate limit exceeded for client '{client.name}': retry after {seconds:g} s")
                result["_meta"] = {RETRY_AFTER_META: seconds}
                return result, "rate_limited"
        route = self.hub.catalog.resolve(name) if self.memory_servers else None
        if route is not None and route.backend.name in self.memory_servers:
            refused, arguments = await self._memory_scope(client, route.tool, name, arguments or {})
            if refused is not None:
                return refused, "denied"
            result = await self.hub.call_tool(
                name, arguments, meta=meta, on_progress=on_progress, identity=client.name
            )
            if route.tool == "get_memory" and not result.get("isError") and not self._owns(
                client, _namespace_of(result)
            ):
                return tool_error(_not_found(arguments)), "denied"
        else:
            result = await self.hub.call_tool(
                name, arguments, meta=meta, on_progress=on_progress, identity=client.name
            )
        return result, "error" if result.get("isError") else "ok"

    def _audit(
        self, client: Client | None, name: str, outcome: str, began: float, arguments: dict[str, Any] | None
    ) -> None:
        """One JSON line, built by hand (names are JSON-quoted once and cached): this runs on every call."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        quoted = self._quoted
        if len(quoted) > 4096:
            quoted.clear()
        tool = quoted.get(name) or quoted.setdefault(name, json.dumps(name))
        who = "null"
        if client is not None:
            who = quoted.get(client.name) or quoted.setdefault(client.name, json.dumps(client.name))
        ms = round((time.perf_counter() - began) * 1000, 2)
        line = (
            f'{{"ts":"{self._stamp}.{int((now - second) * 1000):03d}Z","client":{who},"tool":{tool},'
            f'"outcome":"{outcome}","ms":{ms}'
        )
        if self.audit_arguments:
            line += ',"arguments":' + self.redactor(json.dumps(arguments or {}, default=str, separators=(",", ":")))
        audit_log.write(line + "}")

    # -- memory isolation ------------------------------------------------------------------

    def _shared(self, namespace: str) -> bool:
        return any(fnmatchcase(namespace, pattern) for pattern in self.shared_namespaces)

    def _owns(self, client: Client, namespace: str | None) -> bool:
        if namespace is None:
            return False
        return namespace.startswith(client.memory_owner + "/") or self._shared(namespace)

    def _qualify(self, client: Client, namespace: Any) -> Any:
        if not isinstance(namespace, str):
            return namespace
        if self._shared(namespace) or namespace.startswith(client.memory_owner + "/"):
            return namespace
        return f"{client.memory_owner}/{namespace}"

    async def _memory_scope(
        self, client: Client, tool: str, exposed: str, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(refusal, rewritten arguments) for one `ai_memory` call."""
        arguments = dict(arguments)
        if tool in _MEMORY_BY_ID:
            if tool != "get_memory":  # a write by id: look the memory up first
                getter = exposed[: -len(tool)] + "get_memory"
                found = await self.hub.call_tool(getter, {"id": arguments.get("id")}, identity=client.name)
                if found.get("isError") or not self._owns(client, _namespace_of(found)):
                    return tool_error(_not_found(arguments)), arguments
            return None, arguments
        if tool == "memory_stats" and arguments.get("namespace") is None:
            return tool_error("memory_stats needs a namespace through the gateway"), arguments
        arguments["namespace"] = self._qualify(client, arguments.get("namespace", "default"))
        return None, arguments


def _namespace_of(result: dict[str, Any]) -> str | None:
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        namespace = structured.get("namespace")
        if isinstance(namespace, str):
            return namespace
    return None


def _not_found(arguments: dict[str, Any]) -> str:
    return f"memory {arguments.get('id')!r} not found"


# ---------------------------------------------------------------------------------------------- wiring


@dataclass
class Security:
    """What `serve` needs: the resolved keys, the redactor, the buckets."""

    auth: AuthSettings | None
    keys: dict[str, str]
    redactor: Redactor
    audit: AuditSettings
    redis_url: str | None = None
    redis_prefix: str = "mcp-gateway"
    _buckets: MemoryBuckets | RedisBuckets | None = None

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
            audit_arguments=self.audit.arguments,
        )

    def middleware(self, app: ASGIApp) -> SecurityMiddleware:
        return SecurityMiddleware(app, self.auth, self.keys)


def load_security(
    config: GatewayConfig, file: str, raw_servers: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Security:
    """Resolve keys and secrets once at start-up; a problem is a `ConfigError` (exit 2)."""
    environ = os.environ if environ is None else environ
    auth = config.gateway.auth
    keys = load_keys(auth, file, environ) if auth is not None else {}
    redactor = Redactor(collect_secrets(config, raw_servers, environ))
    redis_url = getattr(config.gateway, "redis_url", None) or environ.get("REDIS_URL") or None
    return Security(auth, keys, redactor, config.gateway.audit, redis_url, config.gateway.redis.prefix)
