"""The FastMCP (4.1.0) and MCP SDK (2.3.0) server internals the front uses, in one place.

Neither library has a public API for these; FastMCP itself reaches for the same names (its own
`server/http.py` and `server/context.py` do). Each is used read-only or as the library uses it, and an
upgrade touches only this module:

* `lowlevel`: the SDK server inside a FastMCP server, to add the `resources/subscribe` handlers FastMCP
  does not take, and to run the front on the stdio streams the gateway owns (FastMCP's own stdio runner
  claims the process's stdin/stdout itself);
* `lifespan`: the FastMCP server's lifespan, entered around that stdio run as `run_stdio_async` does;
* `session_ids`: the live Streamable HTTP session ids of the session manager FastMCP's app creates;
* `client_log_level`: the level each session set with `logging/setLevel` (FastMCP keeps them per session);
* `request_channel`, `connection_of`: a request's own outbound channel (so a relayed message rides that
  request's stream, as `ServerSession` does for its typed messages) and the connection it belongs to;
* `request_params`: the raw params of the request a FastMCP `Context` serves (the fields of an input round,
  as the client sent them).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastmcp import FastMCP
from mcp.server.request_state import RequestStateBoundary
from starlette.applications import Starlette

_NO_SESSION = "__no_session__"  # FastMCP's logging/setLevel key for a connection without a session id


def lowlevel(server: FastMCP) -> Any:
    """The SDK `Server` of a FastMCP server."""
    return server._mcp_server


def relay_request_state(server: FastMCP) -> None:
    """Take the SDK's `RequestStateBoundary` off the server's middleware (its public list): it seals the
    `requestState` of every `input_required` the server answers and unseals every echo, but the gateway mints
    none of its own: it relays its backends', which each backend protects and checks itself."""
    sdk_server = lowlevel(server)
    sdk_server.middleware = [m for m in sdk_server.middleware if not isinstance(m, RequestStateBoundary)]


def lifespan(server: FastMCP) -> AbstractAsyncContextManager[None]:
    """The FastMCP server's lifespan (providers, middleware), as its own runners enter it."""
    manager: AbstractAsyncContextManager[None] = server._lifespan_manager()
    return manager


def session_ids(app: Starlette) -> Callable[[], Container[str]]:
    """A function returning the live session ids of the Streamable HTTP `app` FastMCP built (its session
    manager is created by the app's lifespan and kept on the route's ASGI endpoint)."""
    holders: list[Any] = [app, *(getattr(route, "endpoint", None) for route in app.routes)]
    holders += [getattr(holder, "app", None) for holder in holders]

    def live() -> Container[str]:
        for holder in holders:
            manager = getattr(holder, "session_manager", None)
            if manager is not None:
                ids: Container[str] = manager._server_instances
                return ids
        return ()

    return live


def client_log_level(server: Any, session_id: str | None) -> str | None:
    """The level a client set with `logging/setLevel` on the FastMCP front `server`, by session."""
    levels = getattr(server, "_client_log_levels", None)
    level: str | None = levels.get(session_id or _NO_SESSION) if levels else None
    return level


def request_channel(session: Any) -> Any:
    """The request-scoped outbound channel of a `ServerSession` (`notify`, `send_raw_request`)."""
    return session._request_outbound


def request_params(context: Any) -> dict[str, Any]:
    """The raw params of the request the FastMCP `context` serves ({} outside one)."""
    request_context = getattr(context, "request_context", None)
    params = getattr(getattr(request_context, "_srctx", None), "params", None)
    return dict(params) if isinstance(params, dict) else {}


def connection_of(session: Any) -> Any:
    """The connection a per-request `ServerSession` belongs to (one per client session)."""
    return getattr(session, "_connection", session)
