"""A backend's resources, resource templates and prompts as FastMCP components of the front, read through the
backend's persistent session, with `resources/subscribe` and `completion/complete` forwarded to the backend
that owns the resource or prompt."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

import mcp_types
from fastmcp import FastMCP
from fastmcp.prompts import Message, Prompt, PromptResult
from fastmcp.prompts.base import PromptArgument
from fastmcp.resources import Resource
from fastmcp.resources.base import ResourceContent, ResourceResult
from fastmcp.resources.template import ResourceTemplate, forward_uri
from fastmcp.server.providers.base import Provider
from mcp.shared.exceptions import MCPError
from pydantic import AnyUrl

from gateway.auth.middleware import current_client
from gateway.backends import rounds
from gateway.backends.inflight import CURRENT_PEER
from gateway.backends.session import Backend, BackendUnavailable
from gateway.guard.guard import Guard
from gateway.transports.peers import context_peer, current_context

logger = logging.getLogger("mcp_gateway.front")


async def _backend_request(backend: Backend, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """`backend.request` on behalf of the FastMCP request being served (its client gets relayed traffic, and
    is asked what the backend's input rounds need)."""
    peer = context_peer(current_context())
    token = CURRENT_PEER.set(peer) if peer is not None else None

    async def send(echo: rounds.InputRound) -> tuple[dict[str, Any], str]:
        result = await backend.request(method, {**params, **echo.wire()})
        if not rounds.input_required(result):
            return result, "ok"
        if (problem := rounds.invalid(result)) is not None:
            raise MCPError(mcp_types.INTERNAL_ERROR, f"backend '{backend.name}' asked for input invalidly: {problem}")
        return result, rounds.INPUT_REQUIRED

    try:
        result, outcome = await send(rounds.InputRound())
        if outcome == rounds.INPUT_REQUIRED:
            timeout = backend.config.timeout or backend.settings.call_timeout
            result, _ = await rounds.drive(result, send, peer, timeout, backend.name)
        return result
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

    async def render(self, arguments: dict[str, Any] | None = None) -> PromptResult:
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
                uri=AnyUrl(item.uri),
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


def completion_handler(server: FastMCP) -> Any:
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
