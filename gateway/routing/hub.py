"""The hub: every backend, the merged catalog, and the one call path that every front transport uses."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind

from gateway.backends.messages import FRAMEWORK_META, RESERVED_META, tool_error
from gateway.backends.pipe import ProgressCallback
from gateway.backends.session import Backend, BackendRestarting, BackendUnavailable
from gateway.config.loader import GatewayConfig
from gateway.ops import metrics, tracing
from gateway.resilience.collector import ResilienceCollector
from gateway.resilience.core import Resilience
from gateway.routing.catalog import Catalog, Route

logger = logging.getLogger("mcp_gateway.hub")

_ENVELOPE_META = frozenset({"progressToken"})  # progress is re-tokened on the backend hop
ChangeListener = Callable[[], Awaitable[None]]


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
        self.collector = ResilienceCollector(self.resilience)  # rendered at /metrics beside the registry
        self._listeners: list[ChangeListener] = []
        self.started = anyio.Event()  # set once every backend is up or has failed its first start
        self._changed = anyio.Event()  # set (and replaced) whenever a backend's state or lists change
        self._sessions_seen: dict[str, int] = {}  # backend -> sessions it had opened at its last change
        self.draining = False
        self.calls_in_flight = dict.fromkeys(self.by_name, 0)  # per backend; shutdown waits for them
        for name in self.by_name:
            metrics.IN_FLIGHT.labels(name).set_function(lambda name=name: self.calls_in_flight[name])

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every backend concurrently; report started once each is up or has failed once.

        A front that must answer at once runs this with `start_soon` instead: backends join the catalog as
        they come up (listeners announce each change), and calls for tools not listed yet wait for them
        (`wait_for_tool`)."""
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
        if backend.state == "up" and backend.startup_ms is not None:
            metrics.BACKEND_STARTUP.labels(backend.name).set(backend.startup_ms / 1000)
        if backend.state == "down":
            metrics.BACKEND_RESTARTS.labels(backend.name).inc()
        elif self._sessions_seen.get(backend.name) != backend.sessions_opened:  # a new session is up
            self._sessions_seen[backend.name] = backend.sessions_opened
            self.resilience.backend_up(backend.name)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        if self.catalog.rebuild(self.backends):
            for listener in list(self._listeners):
                try:
                    await listener()
                except Exception as error:
                    logger.debug("catalog listener failed: %s", error)

    @property
    def joining(self) -> bool:
        """Some backend has not finished its first start yet."""
        return not self.started.is_set() and not all(backend.ready.is_set() for backend in self.backends)

    async def wait_for_tool(self, name: str) -> None:
        """While backends are still starting, wait until `name` is in the catalog or every backend has
        started (bounded by `startup_timeout`): a call for a tool of a backend still starting waits for it."""
        with anyio.move_on_after(self.settings.startup_timeout):
            while self.catalog.resolve(name) is None and self.joining:
                await self._changed.wait()

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
        if tracing.tracer is not None:  # one check: the untraced path pays for no span helper
            return await self._traced_call(name, arguments, meta, on_progress, identity)
        route, arguments, policy, key, answer, _outcome = self._route(name, arguments, identity)
        if answer is not None:
            return answer
        result, _outcome = await self._dispatch(route, policy, key, arguments, meta, on_progress)
        return result

    async def _traced_call(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        meta: dict[str, Any] | None,
        on_progress: ProgressCallback | None,
        identity: str | None = None,
    ) -> dict[str, Any]:
        """`call_tool` with a span around the call and one around each stage."""
        assert tracing.tracer is not None
        parent = tracing.parent_context(meta)
        # The entry span is SERVER kind; under FastMCP's own server span (the framework path) it is INTERNAL.
        entry = parent is not None or not trace.get_current_span().get_span_context().is_valid
        with tracing.tracer.start_as_current_span(
            tracing.TOOL_CALL,
            context=parent,
            kind=SpanKind.SERVER if entry else SpanKind.INTERNAL,
            attributes={"mcp.method.name": "tools/call", "gen_ai.tool.name": name},
        ) as span:
            with tracing.tracer.start_as_current_span(tracing.ROUTE) as routing:
                route, arguments, policy, key, answer, ended = self._route(name, arguments, identity)
                if route is not None:
                    span.set_attribute(tracing.BACKEND_ATTRIBUTE, route.backend.name)
                    routing.set_attribute(tracing.BACKEND_ATTRIBUTE, route.backend.name)
                if answer is not None:  # rejected, or answered from the cache
                    tracing.set_outcome(routing, ended)
                    tracing.set_outcome(span, ended)
                    if ended == "ok":
                        span.set_attribute("mcp_gateway.cache_hit", True)
                    return answer
            assert route is not None
            with tracing.tracer.start_as_current_span(
                tracing.BACKEND_REQUEST,
                attributes={tracing.BACKEND_ATTRIBUTE: route.backend.name, "mcp.method.name": "tools/call"},
            ) as request:
                # W3C `traceparent` (and `tracestate`) of this span in the backend request `_meta`, the MCP
                # convention: stdio backends' calls skip the SDK dispatcher (backends/pipe.py), which would do it.
                meta = dict(meta) if meta else {}
                inject(meta)
                result, outcome = await self._dispatch(route, policy, key, arguments, meta, on_progress)
                tracing.set_outcome(request, outcome)
            tracing.set_outcome(span, outcome)
            return result

    def _route(self, name: str, arguments: dict[str, Any] | None, identity: str | None) -> tuple[Any, ...]:
        """`(route, arguments, policy, cache key, answer, outcome)`: `answer` is set when the call ends here
        (unknown tool, invalid arguments, or a fresh cache hit)."""
        arguments = arguments or {}
        route = self.catalog.resolve(name)
        if route is None:
            metrics.child(metrics.CALLS, "_unknown", "unknown_tool").inc()
            logger.info("tools/call %s: unknown tool", name)
            return None, arguments, None, None, tool_error(f"Unknown tool: '{name}'"), "unknown_tool"
        policy = self.resilience.policy(route)
        key = None
        if policy.cacheable:
            began = time.perf_counter()
            key = self.resilience.cache.key(policy, arguments, identity)
            hit = self.resilience.cache.fresh(key)  # L1: no await (hits are counted in the cache metrics)
            if hit is not None:
                elapsed = time.perf_counter() - began
                metrics.child(metrics.CALLS, route.exposed, "ok").inc()
                metrics.child(metrics.LATENCY, route.backend.name).observe(elapsed)
                metrics.child(metrics.TOOL_LATENCY, route.exposed).observe(elapsed)
                return route, arguments, policy, key, hit, "ok"
        problem = route.validation_error(arguments)
        if problem is not None:
            metrics.child(metrics.CALLS, route.exposed, "invalid_arguments").inc()
            logger.info("tools/call %s: invalid arguments: %s", name, problem)
            return route, arguments, policy, key, tool_error(problem), "invalid_arguments"
        return route, arguments, policy, key, None, None

    async def _dispatch(
        self,
        route: Route,
        policy: Any,
        key: Any,
        arguments: dict[str, Any],
        meta: dict[str, Any] | None,
        on_progress: ProgressCallback | None,
    ) -> tuple[dict[str, Any], str]:
        """Send a routed call through the resilience layer, counted in flight; record outcome and latency."""
        if meta:
            meta = {k: v for k, v in meta.items() if k not in _ENVELOPE_META and not k.startswith(RESERVED_META)}
        backend = route.backend.name
        in_flight = self.calls_in_flight
        in_flight[backend] += 1
        began = time.perf_counter()
        try:
            result, outcome = await self.resilience.call(route, policy, key, arguments, meta or None, on_progress)
        finally:
            in_flight[backend] -= 1
        elapsed = time.perf_counter() - began
        metrics.child(metrics.CALLS, route.exposed, outcome).inc()
        metrics.child(metrics.LATENCY, backend).observe(elapsed)
        metrics.child(metrics.TOOL_LATENCY, route.exposed).observe(elapsed)
        if outcome != "ok":
            logger.info("tools/call %s: %s after %.0f ms", route.exposed, outcome, elapsed * 1000)
        return result, outcome

    @property
    def in_flight(self) -> int:
        """Tool calls waiting on a backend right now."""
        return sum(self.calls_in_flight.values())

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
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], str]:
        """One call to the backend: (result, outcome); the resilience layer decides what to do with it."""
        backend = route.backend
        try:
            result = await backend.call_tool(route.tool, arguments, meta=meta, on_progress=on_progress, timeout=timeout)
        except BackendRestarting as error:
            return tool_error(f"{error}; try again shortly"), "restarting"
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
            cleaned = {
                key: value
                for key, value in result_meta.items()
                if not key.startswith(RESERVED_META) and key != FRAMEWORK_META
            }
            if cleaned:
                result["_meta"] = cleaned
            else:
                del result["_meta"]
        return result, "error" if result.get("isError") else "ok"
