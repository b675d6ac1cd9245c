"""Client-scoped arguments: a backend shared by every client keeps each client's data apart when its config
declares which argument holds the scope (`"clientScopedArguments": {"namespace": {...}}`, set for ai_memory).

For a client whose owner is `alice`, on every tool of that backend whose input schema has the argument:

* a value `x` reaches the backend as `alice/x` (unless it is `alice/...` already, or matches one of
  `gateway.auth.memory.shared_namespaces`); an absent value is the schema's default, qualified the same way;
* a tool whose argument defaults to null (acting on every scope, e.g. a statistics tool) is refused unless
  the client names one.

Tools that name a record by id instead (the `lookup` argument, without the scoped one) act only on records
whose scope the client owns: the record is looked up first with the `lookup.tool` (for a read, the result
itself is checked), and anything else is answered `<record> '<id>' not found`, as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase
from typing import Any

from gateway.backends.messages import tool_error
from gateway.backends.rounds import INPUT_REQUIRED, input_required
from gateway.config.loader import GatewayConfig, ScopedArgument
from gateway.guard.clients import Client
from gateway.routing.catalog import Route
from gateway.routing.hub import Hub

Send = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_ABSENT = object()


def scoped_servers(config: GatewayConfig) -> dict[str, dict[str, ScopedArgument]]:
    """server name -> its scoped arguments, for the servers whose calls are scoped per client."""
    auth = config.gateway.auth
    if auth is None or not auth.memory.isolate:
        return {}
    named = auth.memory.servers
    return {
        name: server.client_scoped_arguments
        for name, server in config.mcp_servers.items()
        if server.client_scoped_arguments and (named is None or name in named)
    }


class Scoping:
    """Applies the scoped-argument rules of the configured servers to one client's calls."""

    def __init__(self, hub: Hub, shared: tuple[str, ...] = ()) -> None:
        self.hub = hub
        self.rules = scoped_servers(hub.config)
        self.shared = shared

    def applies(self, route: Route | None) -> bool:
        return route is not None and route.backend.name in self.rules

    async def call(
        self, client: Client, route: Route, arguments: dict[str, Any], send: Send
    ) -> tuple[dict[str, Any], str]:
        """Send the call with its scoped arguments qualified for `client`: (result, outcome)."""
        properties = (route.definition.get("inputSchema") or {}).get("properties") or {}
        arguments = dict(arguments)
        by_record: list[tuple[str, ScopedArgument]] = []
        for name, rule in self.rules[route.backend.name].items():
            if name in properties:
                default = properties[name].get("default", _ABSENT) if isinstance(properties[name], dict) else _ABSENT
                value = arguments.get(name, default)
                if value is None and default is None:  # the tool would act on every client's data
                    return tool_error(f"{route.tool} needs a {name} through the gateway"), "denied"
                if isinstance(value, str):
                    arguments[name] = self._qualify(client, value)
            elif rule.lookup is not None and rule.lookup.argument in properties:
                by_record.append((name, rule))
        reads = [(name, rule) for name, rule in by_record if rule.lookup is not None and rule.lookup.tool == route.tool]
        for name, rule in by_record:  # a write by id: look the record up first
            if (name, rule) not in reads and not await self._owns_record(client, route, name, rule, arguments):
                return self._not_found(rule, arguments), "denied"
        result = await send(arguments)
        if input_required(result):  # the backend asks the client first: it checks again on the retry
            return result, INPUT_REQUIRED
        if not result.get("isError"):
            for name, rule in reads:  # a read by id: check what it found
                if not self._owns(client, _scope_of(result, name)):
                    return self._not_found(rule, arguments), "denied"
        return result, "error" if result.get("isError") else "ok"

    async def _owns_record(
        self, client: Client, route: Route, name: str, rule: ScopedArgument, arguments: dict[str, Any]
    ) -> bool:
        """Whether the record a write names lies in one of `client`'s scopes (looked up first)."""
        assert rule.lookup is not None
        lookup = self.hub.catalog.by_tool.get((route.backend.name, rule.lookup.tool))
        if lookup is None:
            return False
        record = {rule.lookup.argument: arguments.get(rule.lookup.argument)}
        found = await self.hub.call_tool(lookup.exposed, record, identity=client.name)
        return not found.get("isError") and self._owns(client, _scope_of(found, name))

    def _shared(self, scope: str) -> bool:
        return any(fnmatchcase(scope, pattern) for pattern in self.shared)

    def _owns(self, client: Client, scope: str | None) -> bool:
        if scope is None:
            return False
        return scope.startswith(client.memory_owner + "/") or self._shared(scope)

    def _qualify(self, client: Client, scope: str) -> str:
        if self._shared(scope) or scope.startswith(client.memory_owner + "/"):
            return scope
        return f"{client.memory_owner}/{scope}"

    @staticmethod
    def _not_found(rule: ScopedArgument, arguments: dict[str, Any]) -> dict[str, Any]:
        assert rule.lookup is not None
        return tool_error(f"{rule.lookup.record} {arguments.get(rule.lookup.argument)!r} not found")


def _scope_of(result: dict[str, Any], name: str) -> str | None:
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        scope = structured.get(name)
        if isinstance(scope, str):
            return scope
    return None
