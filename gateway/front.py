"""The FastMCP server that faces clients: it speaks every protocol revision and transport FastMCP
supports, and answers from the hub's catalog instead of asking backends per request."""

from __future__ import annotations

import base64
import logging
import weakref
from collections.abc import Sequence
from typing import Any

import mcp_types
from fastmcp import FastMCP
from fastmcp.prompts import Message, Prompt, PromptResult
from fastmcp.prompts.base import PromptArgument
from fastmcp.resources import Resource
from fastmcp.resources.base import ResourceContent, ResourceResult
from fastmcp.server.context import Context
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.providers.base import Provider
from fastmcp.tools.base import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec

from gateway import __version__
from gateway.backend import Backend
from gateway.hub import Hub

logger = logging.getLogger("mcp_gateway.front")


class GatewayTool(Tool):
    """A catalog entry: running it routes the call through the hub."""

    _hub: Hub | None = None

    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:  # type: ignore[override]
        assert self._hub is not None
        progress = None
        if context is not None and context.request_context is not None:
            progress = context.report_progress
        raw = await self._hub.call_tool(self.name, arguments, on_progress=progress)
        result = mcp_types.CallToolResult.model_validate(raw)
        return ToolResult(
            content=result.content,
            structured_content=result.structured_content,
            meta=result.meta,
            is_error=bool(result.is_error),
        )


class CatalogProvider(Provider):
    """Serves the hub's merged tools; the list is rebuilt only when a backend's list changes."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self._version = -1
        self._tools: dict[str, GatewayTool] = {}

    def _current(self) -> dict[str, GatewayTool]:
        catalog = self.hub.catalog
        if catalog.version != self._version:
            tools = {}
            for route in catalog.routes.values():
                definition = route.definition
                tool = GatewayTool(
                    name=route.exposed,
                    title=definition.get("title"),
                    description=definition.get("description"),
                    parameters=definition.get("inputSchema") or {"type": "object"},
                    output_schema=definition.get("outputSchema"),
                    annotations=mcp_types.ToolAnnotations.model_validate(definition["annotations"])
                    if definition.get("annotations")
                    else None,
                    meta=definition.get("_meta"),
                )
                tool._hub = self.hub
                tools[route.exposed] = tool
            self._tools, self._version = tools, catalog.version
        return self._tools

    async def _list_tools(self) -> Sequence[Tool]:
        return list(self._current().values())

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        return self._current().get(name)


class BackendResource(Resource):
    """A backend's resource, read through its persistent session."""

    _backend: Backend | None = None
    _backend_uri: str = ""

    async def read(self) -> ResourceResult:
        assert self._backend is not None
        raw = await self._backend.request("resources/read", {"uri": self._backend_uri})
        result = mcp_types.ReadResourceResult.model_validate(raw)
        contents = [
            ResourceContent(content=item.text, mime_type=item.mime_type)
            if isinstance(item, mcp_types.TextResourceContents)
            else ResourceContent(content=base64.b64decode(item.blob), mime_type=item.mime_type)
            for item in result.contents
        ]
        return ResourceResult(contents=contents)


class BackendPrompt(Prompt):
    """A backend's prompt, rendered through its persistent session."""

    _backend: Backend | None = None
    _backend_name: str = ""

    async def render(self, arguments: dict[str, Any] | None = None) -> PromptResult:  # type: ignore[override]
        assert self._backend is not None
        params: dict[str, Any] = {"name": self._backend_name}
        if arguments:
            params["arguments"] = arguments
        result = mcp_types.GetPromptResult.model_validate(await self._backend.request("prompts/get", params))
        return PromptResult(
            messages=[Message(content=m.content, role=m.role) for m in result.messages],
            description=result.description,
        )


class BackendComponentsProvider(Provider):
    """One backend's resources and prompts; mounted under the backend's name as namespace."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    async def _list_resources(self) -> Sequence[Resource]:
        resources = []
        for item in self.backend.resources:
            resource = BackendResource(
                uri=item.uri,
                name=item.name,
                title=item.title,
                description=item.description,
                mime_type=item.mime_type or "text/plain",
            )
            resource._backend, resource._backend_uri = self.backend, str(item.uri)
            resources.append(resource)
        return resources

    async def _list_prompts(self) -> Sequence[Prompt]:
        prompts = []
        for item in self.backend.prompts:
            prompt = BackendPrompt(
                name=item.name,
                title=item.title,
                description=item.description,
                arguments=[
                    PromptArgument(name=a.name, description=a.description, required=a.required or False)
                    for a in item.arguments or []
                ],
            )
            prompt._backend, prompt._backend_name = self.backend, item.name
            prompts.append(prompt)
        return prompts


class SessionTracker(Middleware):
    """Remembers connected sessions so a catalog change can be announced to each of them."""

    def __init__(self) -> None:
        self.sessions: weakref.WeakSet[Any] = weakref.WeakSet()

    async def on_message(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        ctx = context.fastmcp_context
        if ctx is not None and ctx.request_context is not None:
            self.sessions.add(ctx.request_context.session)
        return await call_next(context)

    async def announce_tools_changed(self) -> None:
        for session in list(self.sessions):
            try:
                await session.send_notification(mcp_types.ToolListChangedNotification())
            except Exception as error:
                logger.debug("could not notify a session: %s", error)
                self.sessions.discard(session)


def build_front(hub: Hub) -> tuple[FastMCP, SessionTracker]:
    """The client-facing FastMCP server for `hub`."""
    server = FastMCP("mcp-gateway", version=__version__, instructions=_instructions(hub))
    server.add_provider(CatalogProvider(hub))
    for backend in hub.backends:
        server.add_provider(BackendComponentsProvider(backend), namespace=backend.namespace)
    tracker = SessionTracker()
    server.add_middleware(tracker)
    return server, tracker


def _instructions(hub: Hub) -> str:
    names = ", ".join(backend.name for backend in hub.backends) or "none"
    return f"mcp-gateway: tools of each backend server are exposed as <server>_<tool>. Backends: {names}."
