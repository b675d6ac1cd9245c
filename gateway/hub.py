"""The hub: every backend, the merged catalog, and the one call path that every front transport uses."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError

from gateway import metrics, telemetry
from gateway.backend import Backend, BackendUnavailable, ProgressCallback
from gateway.catalog import Catalog, Route
from gateway.config import GatewayConfig

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
        self._listeners: list[ChangeListener] = []
        self.started = anyio.Event()
        self.draining = False
        self.in_flight = 0  # tool calls waiting on a backend; shutdown waits for them

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every backend concurrently; report started once each is up or has failed once."""
        async with anyio.create_task_group() as group:
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
        if backend.state == "up" and backend.startup_ms is not None:
            metrics.BACKEND_STARTUP.labels(backend.name).set(backend.startup_ms / 1000)
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
        with telemetry.call_span(name, meta) as span:
            with telemetry.stage(telemetry.ROUTE) as routing:
                route = self.catalog.resolve(name)
                if route is None:
                    metrics.CALLS.labels("_unknown", "unknown_tool").inc()
                    telemetry.outcome(routing, "unknown_tool")
                    telemetry.outcome(span, "unknown_tool")
                    logger.info("tools/call %s: unknown tool", name)
                    return tool_error(f"Unknown tool: '{name}'")
                arguments = arguments or {}
                problem = route.validation_error(arguments)
                if problem is not None:
                    metrics.CALLS.labels(route.exposed, "invalid_arguments").inc()
                    telemetry.outcome(routing, "invalid_arguments")
                    telemetry.outcome(span, "invalid_arguments")
                    logger.info("tools/call %s: invalid arguments: %s", name, problem)
                    return tool_error(problem)
            if meta:
                meta = {k: v for k, v in meta.items() if k not in _ENVELOPE_META and not k.startswith(_RESERVED)}
            backend = route.backend.name
            in_flight = metrics.IN_FLIGHT.labels(backend)
            in_flight.inc()
            self.in_flight += 1
            began = time.perf_counter()
            try:
                with telemetry.stage(telemetry.BACKEND_REQUEST) as request:
                    result, outcome = await self._forward(route, arguments, meta or None, on_progress)
                    telemetry.outcome(request, outcome, backend=backend)
            finally:
                self.in_flight -= 1
                in_flight.dec()
            elapsed = time.perf_counter() - began
            metrics.CALLS.labels(route.exposed, outcome).inc()
            metrics.LATENCY.labels(backend).observe(elapsed)
            metrics.TOOL_LATENCY.labels(route.exposed).observe(elapsed)
            telemetry.outcome(span, outcome, backend=backend)
            if outcome != "ok":
                logger.info("tools/call %s: %s after %.0f ms", name, outcome, elapsed * 1000)
            return result

    async def wait_idle(self, poll: float = 0.05) -> None:
        """Return once no tool call is waiting on a backend (callers bound it with a timeout)."""
        while self.in_flight:
            await anyio.sleep(poll)

    async def _forward(
        self,
        route: Route,
        arguments: dict[str, Any],
        meta: dict[str, Any] | None,
        on_progress: ProgressCallback | None,
    ) -> tuple[dict[str, Any], str]:
        backend = route.backend
        try:
            result = await backend.call_tool(route.tool, arguments, meta=meta, on_progress=on_progress)
        except BackendUnavailable as error:
            return tool_error(f"{error}; try again shortly"), "unavailable"
        except MCPError as error:
            if error.code == mcp_types.REQUEST_TIMEOUT:
                timeout = backend.config.timeout or self.settings.call_timeout
                message = f"backend '{backend.name}' timed out after {timeout:g} s on '{route.exposed}'"
                return tool_error(message), "timeout"
            return tool_error(f"backend '{backend.name}' rejected '{route.exposed}': {error.error.message}"), "error"
        result.pop("resultType", None)
        if isinstance(result_meta := result.get("_meta"), dict):
            cleaned = {key: value for key, value in result_meta.items() if not key.startswith(_RESERVED)}
            if cleaned:
                result["_meta"] = cleaned
            else:
                del result["_meta"]
        return result, "error" if result.get("isError") else "ok"
