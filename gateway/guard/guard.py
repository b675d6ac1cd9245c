"""The guard every tool call of a front transport passes: authorization (a tool the client may not use is
answered exactly like an unknown tool), the rate limit, client-scoped arguments, redaction of error texts,
the cache hints a result carries on (narrowed to `private` where the answer depends on the caller), and one
audit line. See docs/security.md for the model."""

from __future__ import annotations

import math
import time
from typing import Any

from gateway.backends.messages import invalid_unicode, tool_error
from gateway.backends.pipe import ProgressCallback
from gateway.backends.rounds import INPUT_REQUIRED, InputRound, input_required
from gateway.config.loader import AuthSettings
from gateway.guard.audit import AuditLog
from gateway.guard.clients import Client
from gateway.guard.ratelimit import Buckets, MemoryBuckets
from gateway.guard.redaction import Redactor
from gateway.guard.scoping import Scoping
from gateway.ops import metrics
from gateway.resilience.cache import SCOPE_HINT, TTL_HINT, hinted_ttl
from gateway.routing import discovery
from gateway.routing.hub import Hub

RETRY_AFTER_META = "mcp-gateway/retryAfterSeconds"


class Guard:
    """Every tool call of a front transport goes through `call_tool` here."""

    def __init__(
        self,
        hub: Hub,
        auth: AuthSettings | None = None,
        redactor: Redactor | None = None,
        buckets: Buckets | None = None,
        *,
        require_client: bool = False,
        audit: AuditLog | None = None,
        default_client: Client | None = None,
    ) -> None:
        self.hub = hub
        self.default_client = default_client  # who a transport without clients speaks for (stdio --profile)
        self.auth = auth
        self.redactor = redactor or Redactor()
        self.buckets = buckets or MemoryBuckets()
        self.require_client = require_client  # HTTP with auth: no client means refuse
        self.audit = audit or AuditLog()
        self.reconfigure(auth)

    def reconfigure(self, auth: AuthSettings | None) -> None:
        """Take `gateway.auth` and the scoped servers of the hub's config (at start, and on a config reload)."""
        self.auth = auth
        shared = tuple(auth.memory.shared_namespaces) if auth is not None else ()
        self.scoping = Scoping(self.hub, shared)

    def tools(self, client: Client | None) -> list[dict[str, Any]]:
        """The catalog as `client` sees it: the one filter of both front paths (in search mode, the
        meta-tools that stand in for it)."""
        client = client or self.default_client
        if self.hub.discovery is not None:
            return [] if client is None and self.require_client else discovery.DEFINITIONS
        if client is None:
            return [] if self.require_client else self.hub.catalog.tools
        return client.tools(self.hub)

    def _same_for_everyone(self, client: Client | None) -> bool:
        """Nothing the gateway answers depends on who asks: no per-client allow list, profile or scoped
        arguments (all of which come with a client)."""
        return client is None and self.default_client is None and not self.require_client

    def list_hints(self, client: Client | None) -> dict[str, Any]:
        """`ttlMs`/`cacheScope` of `tools/list` for 2026-07-28 clients: `public` only when the list is the same
        for every caller (no per-client allow list, no profile), else `private`."""
        ttl = self.hub.settings.cache_hints.list_ttl_ms
        return {"ttlMs": ttl, "cacheScope": "public" if self._same_for_everyone(client) else "private"}

    def narrow_hints(self, client: Client | None, result: dict[str, Any]) -> None:
        """The backend's own cache hints on a tool result (`ttlMs`, `cacheScope`), passed on narrowed: a
        result that depends on the caller, or whose scope the backend left out, is `private`; a malformed
        `ttlMs` is 0. A result without hints gets none."""
        if TTL_HINT not in result and SCOPE_HINT not in result:
            return
        if result.get(SCOPE_HINT) != "public" or not self._same_for_everyone(client):
            result[SCOPE_HINT] = "private"
        if TTL_HINT in result and hinted_ttl(result) == 0:
            result[TTL_HINT] = 0  # a malformed one too

    def permits(self, client: Client | None, name: str) -> bool:
        client = client or self.default_client
        if client is None:
            return not self.require_client
        return client.permits(self.hub, name)

    def shows(self, client: Client | None, exposed: str) -> bool:
        """Whether `client` may see a backend's prompt or resource, by its exposed name
        (`<server>_<name>`): the same allow/deny patterns as for tools."""
        client = client or self.default_client
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
        on_progress: ProgressCallback | None = None,
        input_round: InputRound | None = None,
    ) -> dict[str, Any]:
        """Authorize, rate-limit, scope, route through the hub, scrub an error, write the audit line. In
        search mode `search_tools` is answered here and `call_tool` is unwrapped: its inner call takes this
        same path (and is what the audit line names). `input_round`: a 2026-07-28 caller's part in input
        rounds (see `Hub.call_tool`); a retry after `input_required` is a call like any other here."""
        began = time.perf_counter()
        if self.hub.joining and self.hub.catalog.resolve(name) is None:
            await self.hub.wait_for_tool(name)  # its backend may still be starting
        outcome = "exception"
        client = client or self.default_client
        try:
            if self.hub.discovery is not None and name in discovery.META_TOOLS:
                if name == discovery.SEARCH_TOOLS:
                    result, outcome = await self._search(client, arguments)
                    return result
                unwrapped = discovery.parse_call(arguments)
                if isinstance(unwrapped, str):
                    outcome = "invalid_arguments"
                    return tool_error(unwrapped)
                name, arguments = unwrapped
            result, outcome = await self._call(client, name, arguments or {}, meta, on_progress, input_round)
            if result.get("isError"):
                self.redactor.result(result)
            self.narrow_hints(client, result)
            return result
        finally:
            self.hub.recent.record(name, client.name if client is not None else None, outcome, began)
            if self.audit.enabled:
                self.audit.record(client.name if client is not None else None, name, outcome, began, arguments)

    async def _call(
        self,
        client: Client | None,
        name: str,
        arguments: dict[str, Any],
        meta: dict[str, Any] | None,
        on_progress: ProgressCallback | None,
        input_round: InputRound | None = None,
    ) -> tuple[dict[str, Any], str]:
        if not self.permits(client, name):
            metrics.CALLS.labels("_unknown", "unknown_tool").inc()
            return tool_error(f"Unknown tool: '{name}'"), "denied"  # exactly what an unknown tool gets
        if arguments and invalid_unicode(arguments):
            message = f"Invalid arguments for tool '{name}': a string is not valid Unicode (a lone surrogate)"
            return tool_error(message), "invalid_arguments"
        identity = None
        if client is not None:
            identity = client.name
            refused = await self._rate_limited(client, name)
            if refused is not None:
                return refused, "rate_limited"
            route = self.hub.catalog.resolve(name) if self.scoping.rules else None
            if route is not None and self.scoping.applies(route):

                async def send(scoped: dict[str, Any]) -> dict[str, Any]:
                    return await self.hub.call_tool(
                        name, scoped, meta=meta, on_progress=on_progress, identity=identity, input_round=input_round
                    )

                return await self.scoping.call(client, route, arguments, send)
        result = await self.hub.call_tool(
            name, arguments, meta=meta, on_progress=on_progress, identity=identity, input_round=input_round
        )
        if input_required(result):
            return result, INPUT_REQUIRED
        return result, "error" if result.get("isError") else "ok"

    async def rate_limited(self, client: Client) -> float | None:
        """Take one of `client`'s rate-limit tokens (tool calls and `initialize` both do): None if it got
        one, else the seconds until one is available."""
        limit = client.rate_limit
        if limit is None:
            return None
        wait = await self.buckets.take(client.name, limit.per_minute / 60, limit.capacity)
        return math.ceil(wait * 10) / 10 if wait > 0 else None

    async def _rate_limited(self, client: Client, name: str) -> dict[str, Any] | None:
        """The refusal when `client` is over its rate limit, else None (a token was taken)."""
        seconds = await self.rate_limited(client)
        if seconds is None:
            return None
        metrics.CALLS.labels(name, "rate_limited").inc()
        result = tool_error(f"Rate limit exceeded for client '{client.name}': retry after {seconds:g} s")
        result["_meta"] = {RETRY_AFTER_META: seconds}
        return result

    async def _search(self, client: Client | None, arguments: Any) -> tuple[dict[str, Any], str]:
        """`search_tools`: rate-limited like any call; only tools `client` may call are ever found."""
        search = self.hub.discovery
        assert search is not None
        if client is None and self.require_client:
            return tool_error(f"Unknown tool: '{discovery.SEARCH_TOOLS}'"), "denied"
        parsed = discovery.parse_search(arguments)
        if isinstance(parsed, str):
            return tool_error(parsed), "invalid_arguments"
        if client is not None and (refused := await self._rate_limited(client, discovery.SEARCH_TOOLS)):
            return refused, "rate_limited"
        query, limit = parsed
        catalog = self.hub.catalog
        found = await search.search(
            catalog.tools, catalog.version, query, limit, lambda tool: self.permits(client, tool)
        )
        return discovery.search_result(found), "ok"
