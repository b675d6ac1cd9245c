"""The FastMCP server that faces clients: it speaks every protocol revision and transport FastMCP
supports, and answers tools from the hub's catalog instead of asking backends per request (a backend's
resources and prompts: `gateway.transports.components`)."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

import mcp_types
from fastmcp import FastMCP
from fastmcp.server.context import Context
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.providers.base import Provider
from fastmcp.tools.base import InputRequiredToolResult, Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway import __version__
from gateway.auth.middleware import current_client
from gateway.backends.inflight import CURRENT_PEER
from gateway.backends.rounds import InputRound, InvalidRound, input_required
from gateway.backends.session import Backend
from gateway.guard.guard import Guard
from gateway.routing import discovery
from gateway.routing.hub import LIST_CHANGED, Hub
from gateway.transports import framework
from gateway.transports.components import (
    BackendComponentsProvider,
    ResourceSubscriptions,
    completion_handler,
)
from gateway.transports.peers import context_peer, current_context, progress_reporter

logger = logging.getLogger("mcp_gateway.front")


class GatewayTool(Tool):
    """A catalog entry: running it routes the call through the hub."""

    _guard: Guard | None = None

    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:
        assert self._guard is not None
        if context is None:
            context = current_context()  # FastMCP does not pass it to `run`
        peer = context_peer(context)  # the backend's sampling/elicitation/logs during the call go to this client
        progress = None
        if peer is not None:
            # On the client's own token: `Context.report_progress` looks for it where the SDK does not put it.
            meta = context.request_context.meta if context is not None and context.request_context else None
            progress_token = meta.get("progressToken") if isinstance(meta, dict) else None
            progress = progress_reporter(peer.post, progress_token) if progress_token is not None else None
        input_round = None
        if _modern(context):  # the client answers a backend's input rounds itself (see `gateway.backends.rounds`)
            try:
                input_round = InputRound.parse(framework.request_params(context))
            except InvalidRound as error:
                raise MCPError(mcp_types.INVALID_PARAMS, str(error)) from None
        token = CURRENT_PEER.set(peer) if peer is not None else None
        try:
            raw = await self._guard.call_tool(
                current_client(), self.name, arguments, on_progress=progress, input_round=input_round
            )
        finally:
            if token is not None:
                CURRENT_PEER.reset(token)
        if peer is not None:
            await peer.drain()
        if input_required(raw):
            return InputRequiredToolResult(mcp_types.InputRequiredResult.model_validate(raw))
        result = mcp_types.CallToolResult.model_validate(raw)
        return ToolResult(
            content=result.content,
            structured_content=result.structured_content,
            meta=result.meta,
            is_error=bool(result.is_error),
        )


def _modern(context: Context | None) -> bool:
    request_context = context.request_context if context is not None else None
    return request_context is not None and request_context.protocol_version in MODERN_PROTOCOL_VERSIONS


class CatalogProvider(Provider):
    """Serves the hub's merged tools; the list is rebuilt only when a backend's list changes."""

    def __init__(self, hub: Hub, guard: Guard) -> None:
        super().__init__()
        self.hub = hub
        self.guard = guard
        self._version = -1
        self._tools: dict[str, GatewayTool] = {}

    def _current(self) -> dict[str, GatewayTool]:
        catalog = self.hub.catalog
        if catalog.version != self._version:
            tools: dict[str, GatewayTool] = {}
            definitions = [{**route.definition, "name": route.exposed} for route in catalog.routes.values()]
            if self.hub.discovery is not None:  # search mode: the meta-tools (listed alone) come first
                definitions = discovery.DEFINITIONS + definitions
            for definition in definitions:
                tool = GatewayTool(
                    name=definition["name"],
                    title=definition.get("title"),
                    description=definition.get("description"),
                    parameters=definition.get("inputSchema") or {"type": "object"},
                    output_schema=definition.get("outputSchema"),
                    annotations=mcp_types.ToolAnnotations.model_validate(definition["annotations"])
                    if definition.get("annotations")
                    else None,
                    meta=definition.get("_meta"),
                )
                tool._guard = self.guard
                tools.setdefault(tool.name, tool)
            self._tools, self._version = tools, catalog.version
        return self._tools

    async def _list_tools(self) -> Sequence[Tool]:
        tools = self._current()  # a client sees only the tools it may call: the guard's one filter
        return [tools[tool["name"]] for tool in self.guard.tools(current_client())]

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        tool = self._current().get(name)
        if tool is None and self.hub.joining:  # its backend may still be starting: wait, as the fast path does
            await self.hub.wait_for_tool(name)
            tool = self._current().get(name)
        if self.hub.discovery is not None and name in discovery.META_TOOLS:
            return tool if self.guard.tools(current_client()) else None
        if tool is None or self.guard.permits(current_client(), name):
            return tool
        return None  # not this client's: exactly as if it did not exist


class SessionTracker(Middleware):
    """Remembers connected clients (their connections: a request's `ServerSession` lives only as long as the
    request) so a catalog change can be announced to each of them."""

    def __init__(self) -> None:
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()

    async def on_message(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        ctx = context.fastmcp_context
        if ctx is not None and ctx.request_context is not None:
            self.connections.add(framework.connection_of(ctx.request_context.session))
        return await call_next(context)

    async def announce_tools_changed(self) -> None:
        """`list_changed` for tools, prompts and resources to every connected client."""
        for connection in list(self.connections):
            try:
                for method in LIST_CHANGED:
                    await connection.outbound.notify(method, None)
            except Exception as error:
                logger.debug("could not notify a session: %s", error)
                self.connections.discard(connection)


def build_front(hub: Hub, guard: Guard | None = None) -> tuple[FastMCP, SessionTracker]:
    """The client-facing FastMCP server for `hub`; every tool call goes through `guard`."""
    server = FastMCP("mcp-gateway", version=__version__, instructions=_instructions(hub))
    framework.relay_request_state(server)  # a backend's requestState reaches its client, and comes back, as is
    guard = guard or Guard(hub)
    server.add_provider(CatalogProvider(hub, guard))
    server.add_completion_handler(completion_handler(server))
    subscriptions = ResourceSubscriptions(server)
    lowlevel = framework.lowlevel(server)
    lowlevel.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams, subscriptions.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", mcp_types.UnsubscribeRequestParams, subscriptions.unsubscribe)
    mounted: weakref.WeakSet[Backend] = weakref.WeakSet()

    def mount() -> None:
        """Mount the resources and prompts of each backend not mounted yet: at start, and for the backends a
        config reload starts (a stopped backend's provider stays, empty)."""
        for backend in hub.backends:
            if backend not in mounted:
                mounted.add(backend)
                server.add_provider(BackendComponentsProvider(backend, guard), namespace=backend.namespace)
                backend.on_resource_updated = subscriptions.updated

    async def mount_on_change() -> None:
        mount()

    mount()
    hub.add_listener(mount_on_change)  # before the transports' listeners announce the change to clients
    tracker = SessionTracker()
    server.add_middleware(tracker)
    return server, tracker


def _instructions(hub: Hub) -> str:
    names = ", ".join(backend.name for backend in hub.backends) or "none"
    return f"mcp-gateway: tools of each backend server are exposed as <server>_<tool>. Backends: {names}."
