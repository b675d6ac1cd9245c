"""The hub: every backend, the merged catalog, and the one call path that every front transport uses."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError

from gateway import metrics
from gateway.backend import Backend, BackendUnavailable, ProgressCallback
from gateway.catalog import Catalog, Route
from gateway.config import GatewayConfig
from gateway.resilience.core import Resilience

logger = logging.getLogger("mcp_gateway.hub")

_RESERVED = "io.modelcontextprotocol/"  # the era envelope: each hop stamps its own
_ENVELOPE_META = frozenset({"progressToken"})  # progress is re-tokened on the backend hop
ChangeListener = Callable[[], Awaitable[None]]


def tool_error(message: str) -> dict[str, Any]:
    """A `CallToolResult` that reports a failure to the model rather than to the protocol layer."""
    return {"content": [{"type": "text", "text": message}], "isError": True}


class Hub:
    """Owns the backends and routes tool calls to them."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.settings = config.gateway
        self.catalog = Catalog(self.settings.name_separator)
        self.backends = [
            Backend(name, server, self.settings, on_change=self._backend_changed)
            for name, server in config.enabled_servers.items()
        ]
        self.by_name = {backend.name: backend for backend in self.backends}
        self.resilience = Resilience(self.settings, list(self.by_name), self._forward)
        self._listeners: list[ChangeListener] = []
        self.started = anyio.Event()
        self.draining = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every backend concurrently; report started once each is up or has failed once."""
        async with anyio.create_task_group() as group:
            group.start_soon(self.resilience.run)
            for backend in self.backends:
                group.start_soon(backend.run)
            with anyio.move_on_after(self.settings.startup_timeout + 1):
                for backend in self.backends:
                    await backend.ready.wait()
            self.catalog.rebuild(self.backends)
            self.started.set()
            task_status.started()

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` whenever the exposed catalog changes."""
        self._listeners.append(listener)

    async def _backend_changed(self, backend: Backend) -> None:
        metrics.BACKEND_UP.labels(backend.name).set(1 if backend.state == "up" else 0)
        if backend.state == "down":
            metrics.BACKEND_RESTARTS.labels(backend.name).inc()
        if self.catalog.rebuild(self.backends) and self.started.is_set():
            for listener in list(self._listeners):
                try:
                    await listener()
                except Exception as error:
                    logger.debug("catalog listener failed: %s", error)

    @property
    def healthy(self) -> bool:
        return all(backend.state == "up" for backend in self.backends)

    @property
    def ready(self) -> bool:
        """The gateway can serve: it has started, is not draining, and at least one backend is up."""
        if not self.started.is_set() or self.draining:
            return False
        return not self.backends or any(backend.state == "up" for backend in self.backends)

    def health(self) -> dict[str, Any]:
        from gateway import __version__

        return {
            "status": "ok" if self.healthy else "degraded",
            "backends": {
                backend.name: {
                    "state": backend.state,
                    "transport": backend.transport,
                    "tools": len(backend.tools),
                    "last_error": backend.last_error,
                    "restarts": backend.restarts,
                }
                for backend in self.backends
            },
            **self.resilience.health(),
            "version": __version__,
        }

    # ------------------------------------------------------------------ calls

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        meta: dict[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        identity: str | None = None,
    ) -> dict[str, Any]:
        """Route one `tools/call` and return the raw `CallToolResult` dict (tool errors included).

        `identity` is the authenticated client's name when there is one (cache keys, memory owner).
        """
        route = self.catalog.resolve(name)
        if route is None:
            metrics.CALLS.labels("_unknown", "unknown_tool").inc()
            return tool_error(f"Unknown tool: '{name}'")
        arguments = arguments or {}
        policy = self.resilience.policy(route)
        key = None
        if policy.cacheable:
            began = time.perf_counter()
            key = self.resilience.cache.key(policy, arguments, identity)
            hit = self.resilience.cache.fresh(key)  # L1: no await (hits are counted in the cache metrics)
            if hit is not None:
                metrics.CALLS.labels(route.exposed, "ok").inc()
                metrics.LATENCY.labels(route.backend.name).observe(time.perf_counter() - began)
                return hit
        problem = route.validation_error(arguments)
        if problem is not None:
            metrics.CALLS.labels(route.exposed, "invalid_arguments").inc()
            return tool_error(problem)
        if meta:
            meta = {k: v for k, v in meta.items() if k not in _ENVELOPE_META and not k.startswith(_RESERVED)}
        began = time.perf_counter()
        result, outcome = await self.resilience.call(route, policy, key, arguments, meta or None, on_progress)
        metrics.CALLS.labels(route.exposed, outcome).inc()
        metrics.LATENCY.labels(route.backend.name).observe(time.perf_counter() - began)
        return result

    async def _forward(
        self,
        route: Route,
        arguments: dict[str, Any],
        meta: dict[str, Any] | None,
        on_progress: ProgressCallback | None,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], str]:
        """One call to the backend: (result, outcome); the resilience layer decides what to do with it."""
        backend = route.backend
        try:
            result = await backend.call_tool(
                route.tool, arguments, meta=meta, on_progress=on_progress, timeout=timeout
            )
        except BackendUnavailable as error:
            return tool_error(f"{error}; try again shortly"), "unavailable"
        except MCPError as error:
            if error.code == mcp_types.REQUEST_TIMEOUT:
                timeout = timeout or backend.config.timeout or self.settings.call_timeout
                message = f"backend '{backend.name}' timed out after {timeout:g} s on '{route.exposed}'"
                return tool_error(message), "timeout"
            outcome = "bad_response" if error.code == mcp_types.INTERNAL_ERROR else "error"
            return tool_error(f"backend '{backend.name}' rejected '{route.exposed}': {error.error.message}"), outcome
        if not isinstance(result, dict) or not isinstance(result.get("content", []), list):
            message = f"backend '{backend.name}' answered '{route.exposed}' with an invalid result"
            return tool_error(message), "bad_response"
        result.pop("resultType", None)
        if isinstance(result_meta := result.get("_meta"), dict):
            cleaned = {key: value for key, value in result_meta.items() if not key.startswith(_RESERVED)}
            if cleaned:
                result["_meta"] = cleaned
            else:
                del result["_meta"]
        return result, "error" if result.get("isError") else "ok"
