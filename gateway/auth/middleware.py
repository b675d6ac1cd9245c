"""The ASGI middleware in front of `/mcp`, `/sse`, `/messages/` and `/metrics`: it rejects a bad Origin (403)
and a missing or unknown bearer token (401), and puts the authenticated `Client` into the ASGI scope under
`CLIENT_SCOPE_KEY` (and `scope["user"]`, so FastMCP's `get_access_token()` sees it too); and the Host check
against DNS rebinding (`host_guard`)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from fastmcp.server.http import HostOriginGuardMiddleware

from gateway.auth.authenticate import Authenticator
from gateway.auth.keys import auth_enabled
from gateway.auth.sessions import SessionOwners
from gateway.config.loader import AuthSettings
from gateway.guard.clients import Client
from gateway.ops.asgi import ASGIApp, Receive, Scope, Send, send_error

CLIENT_SCOPE_KEY = "mcp_gateway.client"


def host_guard(app: ASGIApp) -> ASGIApp:
    """DNS-rebinding protection for every MCP endpoint, fast path included: when bound to a loopback address,
    a request whose Host is not local is refused (421). Origin is checked against the configured allow-list
    by `SecurityMiddleware`, so this guard lets every Origin through."""
    guarded: ASGIApp = HostOriginGuardMiddleware(app, mode="auto", allowed_origins=["*"])
    return guarded


_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?:\[[0-9a-f:.]+\]|{_LABEL}(?:\.{_LABEL})*)$")


@dataclass(frozen=True, slots=True)
class Origin:
    """A parsed `scheme://host:port`; `port` None in an allow entry means any port (`:*`)."""

    scheme: str
    host: str
    port: int | None


def parse_origin(text: str, *, wildcard_port: bool = False) -> Origin | None:
    """`scheme://host[:port]` exactly (no userinfo, path, query or fragment), or None. IPv6 hosts are
    bracketed; a missing port is the scheme's default; `:*` is allowed only where `wildcard_port`."""
    text = text.strip().lower().removesuffix("/")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or not rest or any(c in rest for c in "/?#@\\ \t"):
        return None
    if rest.startswith("["):
        host, bracket, tail = rest.partition("]")
        host += bracket
        if not bracket or (tail and not tail.startswith(":")):
            return None
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text = rest.partition(":")
        port_text = port_text if colon else None
    if not _HOST.match(host) or (host.startswith("[") and not _valid_ipv6(host[1:-1])):
        return None
    if port_text is None:
        return Origin(scheme, host, _DEFAULT_PORTS[scheme])
    if port_text == "*" and wildcard_port:
        return Origin(scheme, host, None)
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        return None
    return Origin(scheme, host, int(port_text))


def _valid_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _origin_allowed(origin: str, allowed: tuple[Origin, ...] | None) -> bool:
    """`allowed` None means every origin (`"*"` in the config)."""
    if allowed is None:
        return True
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    return any(
        entry.scheme == parsed.scheme and entry.host == parsed.host and entry.port in (None, parsed.port)
        for entry in allowed
    )


def parse_allowed_origins(patterns: list[str]) -> tuple[Origin, ...] | None:
    """The configured allow entries, parsed (None: `"*"`, any origin); an entry that is not
    `scheme://host[:port|:*]` is a `ValueError` naming it."""
    if any(pattern.strip() == "*" for pattern in patterns):
        return None
    parsed = []
    for pattern in patterns:
        entry = parse_origin(pattern, wildcard_port=True)
        if entry is None:
            raise ValueError(f"allowed origin {pattern!r} is not scheme://host[:port] (port may be *)")
        parsed.append(entry)
    return tuple(parsed)


PROTECTED_PATHS = frozenset({"/mcp", "/mcp/", "/sse", "/metrics", "/status"})
OPTIONAL_AUTH_PATHS = frozenset({"/health"})  # a valid token narrows the details to that client's view
MESSAGES_PREFIX = "/messages/"


class SecurityMiddleware:
    """Origin check and bearer authentication in front of the MCP endpoints and `/metrics`."""

    def __init__(self, app: ASGIApp, auth: AuthSettings | None, keys: dict[str, str] | None = None) -> None:
        self.app = app
        self.reconfigure(auth, keys)
        self.sessions = SessionOwners() if self.authenticator is not None else None

    def reconfigure(self, auth: AuthSettings | None, keys: dict[str, str] | None) -> None:
        """Take new keys, clients and origins (a config reload's; authentication stays on or off, so the
        sessions' owners are kept)."""
        origins = auth.allowed_origins if auth is not None else AuthSettings().allowed_origins
        self.origins = parse_allowed_origins(origins)
        self.authenticator = Authenticator(auth, keys or {}) if auth is not None and auth_enabled(auth) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in OPTIONAL_AUTH_PATHS:
            await self.identify(scope, _header(scope, b"authorization"))
        if not protects(path):
            await self.app(scope, receive, send)
            return
        origin = authorization = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        admitted = await self.admit(scope, send, origin, authorization)
        if admitted is not None:
            await self.app(admitted[0], receive, admitted[1])

    async def identify(self, scope: Scope, authorization: str | None) -> None:
        """For a path where a token is optional (`/health`): a valid one puts its client in `scope`, so the
        endpoint shows that client's view; none, or an invalid one, leaves the anonymous view."""
        if self.authenticator is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            client = await self.authenticator.authenticate(token.strip())
            if client is not None:
                scope[CLIENT_SCOPE_KEY] = client

    async def admit(
        self, scope: Scope, send: Send, origin: str | None, authorization: str | None
    ) -> tuple[Scope, Send] | None:
        """The request's (scope, send) to go on with, or None once it has been refused (403 or 401 sent).

        For a caller that has already read the headers (`gateway.transports.http.HTTPEntry` reads them once)."""
        if origin is not None and not _origin_allowed(origin, self.origins):
            await send_error(send, 403, "forbidden_origin", "the Origin of this request is not allowed", [])
            return None
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
                return None
            scope[CLIENT_SCOPE_KEY] = client
            scope["user"] = _authenticated_user(client)
            if self.sessions is not None and scope["path"].startswith("/mcp"):
                scope = self.sessions.guard(scope, client.name)
                send = self.sessions.learning(scope, client.name, send)
        return scope, send


def protects(path: str) -> bool:
    """Whether requests to `path` pass the Origin check and authentication."""
    return path in PROTECTED_PATHS or path.startswith(MESSAGES_PREFIX)


def _header(scope: Scope, name: bytes) -> str:
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), "")


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
