"""The MCP SDK client internals the backend sessions use, in one place.

`mcp` 2.3.0 has no public way to do these; each is a private name of the pinned SDK, kept here so an
upgrade touches one module:

* `stamp`, `envelope` and `dispatch`: a request as plain dicts on the session's dispatcher, stamped with the
  negotiated era's `_meta` and headers. `ClientSession.send_request` does the same, but only for typed
  requests and with a model validation of each result: on the hot path that is most of the cost per call.
* `negotiate`: the SDK's own protocol-era probe (the 2026 `server/discover`, else the `initialize`
  handshake), which only `mcp.client.Client` uses publicly, around a session it opens itself; with
  `handshake_first`, the handshake is tried first (`ClientSession.initialize`, public) and the probe only when
  the backend refuses it.
"""

from __future__ import annotations

from typing import Any

from mcp import ClientSession
from mcp.client._probe import negotiate_auto
from mcp.shared.exceptions import MCPError


def stamp(session: ClientSession, method: str, params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """`params` with the negotiated era's `_meta` (and `options` with its headers)."""
    data: dict[str, Any] = {"method": method, "params": params}
    session._stamp(data, options)  # type: ignore[arg-type]
    stamped: dict[str, Any] = data["params"]
    return stamped


def envelope(session: ClientSession, method: str) -> dict[str, Any]:
    """The `_meta` the negotiated era stamps on a `method` request, without the HTTP headers: the same for
    every request of a session, so the stdio hot path stamps it once per session, not per call."""
    data: dict[str, Any] = {"method": method, "params": {}}
    session._stamp(data, {})
    return dict(data["params"].get("_meta") or {})


async def dispatch(
    session: ClientSession, method: str, params: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """Send already-stamped `params` on `session`'s dispatcher; the raw result dict."""
    result: dict[str, Any] = await session._dispatcher.send_raw_request(method, params, options)  # type: ignore[arg-type]
    return result


async def negotiate(session: ClientSession, *, handshake_first: bool = False) -> None:
    """Agree on the protocol era with the backend: discover, else initialize; with `handshake_first`,
    initialize, else (a backend that refuses the handshake: a 2026-07-28-only server) discover."""
    if handshake_first:
        try:
            await session.initialize()
            return
        except MCPError:
            pass
    await negotiate_auto(session)
