"""The ASGI middleware in front of `/mcp`, `/sse`, `/messages/` and `/metrics`: it rejects a bad Origin (403)
and a missing or unknown bearer token (401), and puts the authenticated `Client` into the ASGI scope under
`CLIENT_SCOPE_KEY` (and `scope["user"]`, so FastMCP's `get_access_token()` sees it too); and the Host check
against DNS rebinding (`host_guard`)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

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


PROTECTED_PATHS = frozenset({"/mcp", "/mcp/", "/sse", "/metrics", "/status"})
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
        if scope["type"] != "http" or not protects(scope["path"]):
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
