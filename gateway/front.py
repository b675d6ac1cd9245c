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
from fastmcp.resources.template import ResourceTemplate, forward_uri
from fastmcp.server.context import Context
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.providers.base import Provider
from fastmcp.tools.base import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from mcp.shared.exceptions import MCPError

from gateway import __version__
from gateway.backend import Backend, BackendUnavailable
from gateway.hub import Hub
from gateway.relay import CURRENT_PEER, context_peer
from gateway.security import Guard, current_client

logger = logging.getLogger("mcp_gateway.front")


class GatewayTool(Tool):
    """A catalog entry: running it routes the call through the hub."""

    _hub: Hub | None = None
    _guard: Guard | None = None

    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:  # type: ignore[override]
        assert self._guard is not None
        if context is None:
            context = _current_context()  # FastMCP does not pass it to `run`
        progress = _progress_reporter(context)
        peer = context_peer(context)  # the backend's sampling/elicitation/logs during the call go to this client
        token = CURRENT_PEER.set(peer) if peer is not None else None
        try:
            raw = await self._guard.call_tool(current_client(), self.name, arguments, on_progress=progress)
        finally:
            if token is not None:
                CURRENT_PEER.reset(token)
        if peer is not None:
            await peer.drain()
        result = mcp_types.CallToolResult.model_validate(raw)
        return ToolResult(
            content=result.content,
            structured_content=result.structured_content,
            meta=result.meta,
            is_error=bool(result.is_error),
        )


def _progress_reporter(context: Context | None) -> Any:
    """Report a backend's progress on the client's own token (`Context.report_progress` looks for the token
    where the SDK does not put it, so it would report nothing)."""
    request_context = context.request_context if context is not None else None
    if request_context is None:
        return None
    meta = request_context.meta
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    if token is None:
        return None
    session, request_id = request_context.session, request_context.request_id

    async def report(progress: float, total: float | None, message: str | None) -> None:
        await session.send_progress_notification(
            progress_token=token, progress=progress, total=total, message=message, related_request_id=request_id
        )

    return report


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
                tool._hub, tool._guard = self.hub, self.guard
                tools[route.exposed] = tool
            self._tools, self._version = tools, catalog.version
        return self._tools

    async def _list_tools(self) -> Sequence[Tool]:
        tools = self._current()
        if not self.guard.require_client:
            return list(tools.values())
        client = current_client()  # a client sees only the tools it may call
        return [tool for name, tool in tools.items() if self.guard.permits(client, name)]

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        tool = self._current().get(name)
        if tool is None or not self.guard.require_client or self.guard.permits(current_client(), name):
            return tool
        return None  # not this client's: exactly as if it did not exist


def _current_context() -> Context | None:
    from fastmcp.server.dependencies import get_context

    try:
        return get_context()
    except RuntimeError:
        return None


async def _backend_request(backend: Backend, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """`backend.request` on behalf of the FastMCP request being served (its client gets relayed traffic)."""
    peer = context_peer(_current_context())
    token = CURRENT_PEER.set(peer) if peer is not None else None
    try:
        return await backend.request(method, params)
    finally:
        if token is not None:
            CURRENT_PEER.reset(token)
        if peer is not None:
            await peer.drain()


async def _read_backend(backend: Backend, uri: str) -> ResourceResult:
    raw = await _backend_request(backend, "resources/read", {"uri": uri})
    result = mcp_types.ReadResourceResult.model_validate(raw)
    contents = [
        ResourceContent(content=item.text, mime_type=item.mime_type, meta=item.meta)
        if isinstance(item, mcp_types.TextResourceContents)
        else ResourceContent(content=base64.b64decode(item.blob), mime_type=item.mime_type, meta=item.meta)
        for item in result.contents
    ]
    return ResourceResult(contents=contents)


class BackendResource(Resource):
    """A backend's resource, read through its persistent session."""

    _backend: Backend | None = None
    _backend_uri: str = ""

    async def read(self) -> ResourceResult:
        assert self._backend is not None
        return await _read_backend(self._backend, self._backend_uri)


class BackendTemplate(ResourceTemplate):
    """A backend's resource template: reads expand the backend's own template and go through its session."""

    _backend: Backend | None = None
    _backend_template: str = ""

    async def _read(self, uri: str, params: dict[str, Any]) -> ResourceResult:
        assert self._backend is not None
        return await _read_backend(self._backend, self.backend_uri(uri, params))

    def backend_uri(self, uri: str, params: dict[str, Any]) -> str:
        return forward_uri(self._backend_template, params, uri)


class BackendPrompt(Prompt):
    """A backend's prompt, rendered through its persistent session."""

    _backend: Backend | None = None
    _backend_name: str = ""

    async def render(self, arguments: dict[str, Any] | None = None) -> PromptResult:  # type: ignore[override]
        assert self._backend is not None
        params: dict[str, Any] = {"name": self._backend_name}
        if arguments:
            params["arguments"] = arguments
        result = mcp_types.GetPromptResult.model_validate(await _backend_request(self._backend, "prompts/get", params))
        return PromptResult(
            messages=[Message(content=m.content, role=m.role) for m in result.messages],
            description=result.description,
        )


class BackendComponentsProvider(Provider):
    """One backend's resources and prompts; mounted under the backend's name as namespace.

    With per-client policies, a client sees (and may read, get, subscribe to or complete) only the
    prompts, resources and templates whose exposed name `<server>_<name>` its allow/deny lists
    permit; the rest behave exactly as if they did not exist."""

    def __init__(self, backend: Backend, guard: Guard | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.guard = guard

    def _visible(self, name: str) -> bool:
        if self.guard is None or not self.guard.require_client:
            return True
        exposed = f"{self.backend.namespace}_{name}" if self.backend.namespace else name
        return self.guard.shows(current_client(), exposed)

    async def _list_resources(self) -> Sequence[Resource]:
        resources = []
        for item in self.backend.resources:
            if not self._visible(item.name):
                continue
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

    async def _list_resource_templates(self) -> Sequence[ResourceTemplate]:
        templates = []
        for item in self.backend.resource_templates:
            if not self._visible(item.name):
                continue
            template = BackendTemplate(
                uri_template=item.uri_template,
                name=item.name,
                title=item.title,
                description=item.description,
                mime_type=item.mime_type or "text/plain",
                annotations=item.annotations,
                parameters={},
            )
            template._backend, template._backend_template = self.backend, item.uri_template
            templates.append(template)
        return templates

    async def _list_prompts(self) -> Sequence[Prompt]:
        prompts = []
        for item in self.backend.prompts:
            if not self._visible(item.name):
                continue
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


def _forwards_subscriptions(backend: Backend) -> bool:
    """The backend takes `resources/subscribe` (a handshake-era session whose server declared it).

    A subscription to a resource of any other backend is accepted and tracked but never fires: a 2026-era
    backend delivers updates only on `subscriptions/listen` streams, which the gateway does not open yet.
    """
    session = backend.session
    if session is None or backend.modern:
        return False
    capabilities = session.server_capabilities
    return capabilities is not None and capabilities.resources is not None and bool(capabilities.resources.subscribe)


class ResourceSubscriptions:
    """`resources/subscribe` and `unsubscribe`, forwarded to the resource's backend (one backend subscription
    per resource however many clients subscribe), and the backend's `notifications/resources/updated`
    relayed to each subscribed client under the URI it subscribed to."""

    def __init__(self, server: FastMCP) -> None:
        self.server = server
        self.subscribers: dict[tuple[str, str], dict[int, tuple[Any, str]]] = {}

    async def _resolve(self, uri: str) -> tuple[Backend, str]:
        resource = await self.server.get_resource(uri)
        if isinstance(resource, BackendResource) and resource._backend is not None:
            return resource._backend, resource._backend_uri
        template = await self.server.get_resource_template(uri)
        if isinstance(template, BackendTemplate) and template._backend is not None:
            params = template.matches(uri)
            if params is not None:
                return template._backend, template.backend_uri(uri, params)
        raise MCPError(mcp_types.INVALID_PARAMS, f"Unknown resource: {uri}")

    async def subscribe(self, ctx: Any, params: mcp_types.SubscribeRequestParams) -> mcp_types.EmptyResult:
        uri = str(params.uri)
        backend, backend_uri = await self._resolve(uri)
        key = (backend.name, backend_uri)
        subscribers = self.subscribers.setdefault(key, {})
        if not subscribers and _forwards_subscriptions(backend):
            try:
                await backend.request("resources/subscribe", {"uri": backend_uri})
            except BackendUnavailable as error:
                del self.subscribers[key]
                raise MCPError(mcp_types.INTERNAL_ERROR, str(error)) from None
        session = ctx.session
        subscribers[id(getattr(session, "_connection", session))] = (session, uri)
        return mcp_types.EmptyResult()

    async def unsubscribe(self, ctx: Any, params: mcp_types.UnsubscribeRequestParams) -> mcp_types.EmptyResult:
        backend, backend_uri = await self._resolve(str(params.uri))
        key = (backend.name, backend_uri)
        subscribers = self.subscribers.get(key, {})
        session = ctx.session
        subscribers.pop(id(getattr(session, "_connection", session)), None)
        if key in self.subscribers and not subscribers:
            del self.subscribers[key]
            if not _forwards_subscriptions(backend):
                return mcp_types.EmptyResult()
            try:
                await backend.request("resources/unsubscribe", {"uri": backend_uri})
            except (BackendUnavailable, MCPError) as error:
                logger.debug("backend %s: unsubscribe %s failed: %s", backend.name, backend_uri, error)
        return mcp_types.EmptyResult()

    async def updated(self, backend: Backend, backend_uri: str) -> None:
        subscribers = self.subscribers.get((backend.name, backend_uri), {})
        for connection, (session, uri) in list(subscribers.items()):
            notification = mcp_types.ResourceUpdatedNotification(
                params=mcp_types.ResourceUpdatedNotificationParams(uri=uri)
            )
            try:
                await session.send_notification(notification)
            except Exception as error:
                logger.debug("could not notify a subscriber of %s: %s", uri, error)
                subscribers.pop(connection, None)


def _completion_handler(server: FastMCP) -> Any:
    """`completion/complete` for a backend's prompt or resource template, asked of that backend."""

    async def complete(
        ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference,
        argument: mcp_types.CompletionArgument,
        context: mcp_types.CompletionContext | None,
    ) -> mcp_types.Completion | None:
        backend: Backend | None = None
        backend_ref: dict[str, Any] = {}
        if isinstance(ref, mcp_types.PromptReference):
            prompt = await server.get_prompt(ref.name)
            if isinstance(prompt, BackendPrompt):
                backend, backend_ref = prompt._backend, {"type": "ref/prompt", "name": prompt._backend_name}
        else:
            for template in await server.list_resource_templates():
                if isinstance(template, BackendTemplate) and template.uri_template == ref.uri:
                    backend = template._backend
                    backend_ref = {"type": "ref/resource", "uri": template._backend_template}
                    break
        if backend is None or backend.session is None:
            return None
        capabilities = backend.session.server_capabilities
        if capabilities is None or capabilities.completions is None:
            return None
        params: dict[str, Any] = {"ref": backend_ref, "argument": argument.model_dump(by_alias=True, mode="json")}
        if context is not None:
            params["context"] = context.model_dump(by_alias=True, mode="json", exclude_none=True)
        try:
            raw = await backend.request("completion/complete", params)
        except BackendUnavailable:
            return None
        return mcp_types.Completion.model_validate(raw.get("completion") or {"values": []})

    return complete


def build_front(hub: Hub, guard: Guard | None = None) -> tuple[FastMCP, SessionTracker]:
    """The client-facing FastMCP server for `hub`; every tool call goes through `guard`."""
    server = FastMCP("mcp-gateway", version=__version__, instructions=_instructions(hub))
    guard = guard or Guard(hub)
    server.add_provider(CatalogProvider(hub, guard))
    for backend in hub.backends:
        server.add_provider(BackendComponentsProvider(backend, guard), namespace=backend.namespace)
    server.add_completion_handler(_completion_handler(server))
    subscriptions = ResourceSubscriptions(server)
    lowlevel = server._mcp_server
    lowlevel.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams, subscriptions.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", mcp_types.UnsubscribeRequestParams, subscriptions.unsubscribe)
    for backend in hub.backends:
        backend.on_resource_updated = subscriptions.updated
    tracker = SessionTracker()
    server.add_middleware(tracker)
    return server, tracker


def _instructions(hub: Hub) -> str:
    names = ", ".join(backend.name for backend in hub.backends) or "none"
    return f"mcp-gateway: tools of each backend server are exposed as <server>_<tool>. Backends: {names}."
