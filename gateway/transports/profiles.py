"""Profiles over HTTP (`gateway.profiles`): `/mcp/NAME` and `/sse/NAME` serve the subset of tools (and of
prompts and resources, by exposed name) that profile NAME's patterns match, intersected with the client's
own allow list. An unknown profile is 404.

Two ASGI middlewares, either side of authentication (`gateway.auth.middleware`):
- `ProfileRouter` (outside) maps `/mcp/NAME` and `/sse/NAME` to `/mcp` and `/sse`, so that every rule of
  those endpoints applies unchanged, and notes the profile in the scope. The SSE stream's `endpoint` event is
  given `profile=NAME`, so that the client's `POST /messages/` carry it back.
- `ProfileClients` (inside) narrows the authenticated client (an anonymous one when auth is off) to the
  profile, where every transport reads it.

A profile is a view, not a security boundary: what a client may call is decided by its allow list alone.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from gateway.auth.middleware import CLIENT_SCOPE_KEY
from gateway.config.features import ProfileSettings
from gateway.guard.clients import ANONYMOUS, Client
from gateway.ops.asgi import ASGIApp, Receive, Scope, Send, send_error

PROFILE_SCOPE_KEY = "mcp_gateway.profile"
_ENDPOINTS = ("/mcp", "/sse")
_MESSAGES = "/messages/"


def _split(path: str) -> tuple[str, str] | None:
    """`("/mcp", "NAME")` for `/mcp/NAME` or `/mcp/NAME/` (likewise `/sse`), else None."""
    for endpoint in _ENDPOINTS:
        if path.startswith(endpoint + "/"):
            name = path[len(endpoint) + 1 :].removesuffix("/")
            if name and "/" not in name:
                return endpoint, name
    return None


class ProfileRouter:
    """`/mcp/NAME`, `/sse/NAME` and `/messages/?profile=NAME` to the plain endpoints, with the profile noted."""

    def __init__(self, app: ASGIApp, profiles: dict[str, ProfileSettings]) -> None:
        self.app = app
        self.profiles = profiles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        split = _split(path)
        if split is not None:
            endpoint, name = split
            if name not in self.profiles:
                await send_error(send, 404, "not_found", f"no profile {name!r} (gateway.profiles)")
                return
            scope = {**scope, "path": endpoint, "raw_path": endpoint.encode(), PROFILE_SCOPE_KEY: name}
            if endpoint == "/sse":
                send = _endpoint_with_profile(send, name)
        elif path.startswith(_MESSAGES):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            name = (query.get("profile") or [None])[0]
            if name is not None:
                if name not in self.profiles:
                    await send_error(send, 404, "not_found", f"no profile {name!r} (gateway.profiles)")
                    return
                scope = {**scope, PROFILE_SCOPE_KEY: name}
        await self.app(scope, receive, send)


def _endpoint_with_profile(send: Send, name: str) -> Send:
    """`send` for an SSE stream: its first `endpoint` event points the client's posts at the profile."""
    pending = True
    marker = b"?session_id="

    async def sending(message: MutableMapping[str, Any]) -> None:
        nonlocal pending
        if pending and message["type"] == "http.response.body":
            body: bytes = message.get("body", b"")
            if b"event: endpoint" in body and marker in body:
                message = {**message, "body": body.replace(marker, f"?profile={name}&session_id=".encode(), 1)}
                pending = False
        await send(message)

    return sending


class ProfileClients:
    """Narrows the request's client to its profile (cached per client and profile)."""

    def __init__(self, app: ASGIApp, profiles: dict[str, ProfileSettings]) -> None:
        self.app = app
        self.use(profiles)

    def use(self, profiles: dict[str, ProfileSettings]) -> None:
        """Serve these profiles (at start, and on a config reload)."""
        self.patterns = {name: tuple(profile.tools) for name, profile in profiles.items()}
        self._narrowed: dict[tuple[str, str], Client] = {}

    def narrowed(self, client: Client | None, profile: str) -> Client:
        base = client or Client(ANONYMOUS)
        key = (base.name, profile)
        cached = self._narrowed.get(key)
        if cached is None or (client is not None and (cached.allow, cached.deny) != (client.allow, client.deny)):
            cached = self._narrowed[key] = base.within(self.patterns[profile])
        return cached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        profile = scope.get(PROFILE_SCOPE_KEY) if scope["type"] == "http" else None
        if profile is not None:
            scope[CLIENT_SCOPE_KEY] = self.narrowed(scope.get(CLIENT_SCOPE_KEY), profile)
        await self.app(scope, receive, send)


def profile_client(profiles: dict[str, ProfileSettings], name: str) -> Client:
    """The caller of `serve --transport stdio --profile NAME`."""
    return Client(ANONYMOUS).within(tuple(profiles[name].tools))


class ProfileEndpoints:
    """The profile layers of one HTTP entry, kept in step with `gateway.profiles` (a config reload may add the
    first profile or remove the last): with none, the entry authenticates itself in one pass
    (`HTTPEntry(app, security)`); with some, `ProfileRouter` → `secure` → `ProfileClients` → app."""

    def __init__(self, entry: Any, app: ASGIApp, secure: Callable[[ASGIApp], Any]) -> None:
        self.entry = entry  # a `gateway.transports.http.HTTPEntry`: its `app` and `security` are set here
        self.app = app
        self.clients = ProfileClients(app, {})
        self.security = secure(self.clients)  # a `SecurityMiddleware` in front of the profile's client
        self.router = ProfileRouter(self.security, {})

    def use(self, profiles: dict[str, ProfileSettings]) -> None:
        self.clients.use(profiles)
        self.router.profiles = profiles
        if profiles:
            self.entry.app, self.entry.security = self.router, None
        else:
            self.entry.app, self.entry.security = self.app, self.security
