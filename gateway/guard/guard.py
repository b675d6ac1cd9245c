"""The guard every tool call of a front transport passes: authorization (a tool the client may not use is
answered exactly like an unknown tool), the rate limit, memory namespacing, redaction of error texts, and
one audit line. See docs/security.md for the model."""

from __future__ import annotations

import json
import math
import time
from fnmatch import fnmatchcase
from typing import Any

from gateway.backends.messages import invalid_unicode, tool_error
from gateway.config.loader import AuthSettings
from gateway.guard.audit import audit_log
from gateway.guard.clients import Client
from gateway.guard.ratelimit import MemoryBuckets, RedisBuckets
from gateway.guard.redaction import Redactor
from gateway.ops import metrics
from gateway.routing.hub import Hub

RETRY_AFTER_META = "mcp-gateway/retryAfterSeconds"


_MEMORY_BY_ID = frozenset({"get_memory", "update_memory", "delete_memory"})


class Guard:
    """Every tool call of a front transport goes through `call_tool` here."""

    def __init__(
        self,
        hub: Hub,
        auth: AuthSettings | None = None,
        redactor: Redactor | None = None,
        buckets: MemoryBuckets | RedisBuckets | None = None,
        *,
        require_client: bool = False,
        audit_arguments: bool = False,
    ) -> None:
        self.hub = hub
        self.auth = auth
        self.redactor = redactor or Redactor()
        self.buckets = buckets or MemoryBuckets()
        self.require_client = require_client  # HTTP with auth: no client means refuse
        self.audit_arguments = audit_arguments
        memory = auth.memory if auth is not None else None
        self.memory_servers = frozenset(memory.servers) if memory is not None and memory.isolate else frozenset()
        self.shared_namespaces = tuple(memory.shared_namespaces) if memory is not None else ()
        self._second, self._stamp = 0, ""
        self._quoted: dict[str, str] = {}

    def tools(self, client: Client | None) -> list[dict[str, Any]]:
        if client is None:
            return [] if self.require_client else self.hub.catalog.tools
        return client.tools(self.hub)

    def permits(self, client: Client | None, name: str) -> bool:
        if client is None:
            return not self.require_client
        return client.permits(self.hub, name)

    def shows(self, client: Client | None, exposed: str) -> bool:
        """Whether `client` may see a backend's prompt or resource, by its exposed name
        (`<server>_<name>`): the same allow/deny patterns as for tools."""
        if client is None:
            return not self.require_client
        return client.matches(exposed)

    async def call_tool(
        self,
        client: Client | None,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        meta: dict[str, Any] | None = None,
        on_progress: Any = None,
    ) -> dict[str, Any]:
        """Authorize, rate-limit, route through the hub, scrub an error, write the audit line."""
        began = time.perf_counter()
        if self.hub.joining and self.hub.catalog.resolve(name) is None:
            await self.hub.wait_for_tool(name)  # its backend may still be starting
        outcome = "exception"
        try:
            result, outcome = await self._call(client, name, arguments, meta, on_progress)
            if result.get("isError"):
                self.redactor.result(result)
            return result
        finally:
            if audit_log.enabled:
                self._audit(client, name, outcome, began, arguments)

    async def rate_limited(self, client: Client) -> float | None:
        """Take one of `client`'s rate-limit tokens (tool calls and `initialize` both do): None if it got
        one, else the seconds until one is available."""
        limit = client.rate_limit
        if limit is None:
            return None
        wait = await self.buckets.take(client.name, limit.per_minute / 60, limit.capacity)
        return math.ceil(wait * 10) / 10 if wait > 0 else None

    async def _call(
        self, client: Client | None, name: str, arguments: dict[str, Any] | None, meta: Any, on_progress: Any
    ) -> tuple[dict[str, Any], str]:
        if not self.permits(client, name):
            metrics.CALLS.labels("_unknown", "unknown_tool").inc()
            return tool_error(f"Unknown tool: '{name}'"), "denied"  # exactly what an unknown tool gets
        if arguments and invalid_unicode(arguments):
            message = f"Invalid arguments for tool '{name}': a string is not valid Unicode (a lone surrogate)"
            return tool_error(message), "invalid_arguments"
        if client is None:
            result = await self.hub.call_tool(name, arguments, meta=meta, on_progress=on_progress)
            return result, "error" if result.get("isError") else "ok"
        if (seconds := await self.rate_limited(client)) is not None:
            metrics.CALLS.labels(name, "rate_limited").inc()
            result = tool_error(f"Rate limit exceeded for client '{client.name}': retry after {seconds:g} s")
            result["_meta"] = {RETRY_AFTER_META: seconds}
            return result, "rate_limited"
        route = self.hub.catalog.resolve(name) if self.memory_servers else None
        if route is not None and route.backend.name in self.memory_servers:
            refused, arguments = await self._memory_scope(client, route.tool, name, arguments or {})
            if refused is not None:
                return refused, "denied"
            result = await self.hub.call_tool(name, arguments, meta=meta, on_progress=on_progress, identity=client.name)
            if (
                route.tool == "get_memory"
                and not result.get("isError")
                and not self._owns(client, _namespace_of(result))
            ):
                return tool_error(_not_found(arguments)), "denied"
        else:
            result = await self.hub.call_tool(name, arguments, meta=meta, on_progress=on_progress, identity=client.name)
        return result, "error" if result.get("isError") else "ok"

    def _audit(
        self, client: Client | None, name: str, outcome: str, began: float, arguments: dict[str, Any] | None
    ) -> None:
        """One JSON line, built by hand (names are JSON-quoted once and cached): this runs on every call."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        quoted = self._quoted
        if len(quoted) > 4096:
            quoted.clear()
        tool = quoted.get(name) or quoted.setdefault(name, json.dumps(name))
        who = "null"
        if client is not None:
            who = quoted.get(client.name) or quoted.setdefault(client.name, json.dumps(client.name))
        ms = round((time.perf_counter() - began) * 1000, 2)
        line = (
            f'{{"ts":"{self._stamp}.{int((now - second) * 1000):03d}Z","client":{who},"tool":{tool},'
            f'"outcome":"{outcome}","ms":{ms}'
        )
        if self.audit_arguments:
            line += ',"arguments":' + self.redactor(json.dumps(arguments or {}, default=str, separators=(",", ":")))
        audit_log.write(line + "}")

    # -- memory isolation ------------------------------------------------------------------

    def _shared(self, namespace: str) -> bool:
        return any(fnmatchcase(namespace, pattern) for pattern in self.shared_namespaces)

    def _owns(self, client: Client, namespace: str | None) -> bool:
        if namespace is None:
            return False
        return namespace.startswith(client.memory_owner + "/") or self._shared(namespace)

    def _qualify(self, client: Client, namespace: Any) -> Any:
        if not isinstance(namespace, str):
            return namespace
        if self._shared(namespace) or namespace.startswith(client.memory_owner + "/"):
            return namespace
        return f"{client.memory_owner}/{namespace}"

    async def _memory_scope(
        self, client: Client, tool: str, exposed: str, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(refusal, rewritten arguments) for one `ai_memory` call."""
        arguments = dict(arguments)
        if tool in _MEMORY_BY_ID:
            if tool != "get_memory":  # a write by id: look the memory up first
                getter = exposed[: -len(tool)] + "get_memory"
                found = await self.hub.call_tool(getter, {"id": arguments.get("id")}, identity=client.name)
                if found.get("isError") or not self._owns(client, _namespace_of(found)):
                    return tool_error(_not_found(arguments)), arguments
            return None, arguments
        if tool == "memory_stats" and arguments.get("namespace") is None:
            return tool_error("memory_stats needs a namespace through the gateway"), arguments
        arguments["namespace"] = self._qualify(client, arguments.get("namespace", "default"))
        return None, arguments


def _namespace_of(result: dict[str, Any]) -> str | None:
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        namespace = structured.get("namespace")
        if isinstance(namespace, str):
            return namespace
    return None


def _not_found(arguments: dict[str, Any]) -> str:
    return f"memory {arguments.get('id')!r} not found"
