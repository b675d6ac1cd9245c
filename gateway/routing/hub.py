"""The hub: every backend, the merged catalog, and the one call path that every front transport uses."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError

from gateway.backends import rounds
from gateway.backends.era import ClientEra
from gateway.backends.inflight import CURRENT_PEER
from gateway.backends.messages import FRAMEWORK_META, RESERVED_META, tool_error
from gateway.backends.pipe import ProgressCallback
from gateway.backends.rounds import INPUT_REQUIRED, InputRound
from gateway.backends.session import Backend, BackendRestarting, BackendUnavailable
from gateway.config.features import META_TOOLS
from gateway.config.loader import ConfigError, GatewayConfig, ServerConfig
from gateway.ops import metrics, tracing
from gateway.ops.published import PublishedFigures
from gateway.ops.status import CallLog
from gateway.resilience.collector import ResilienceCollector
from gateway.resilience.core import Resilience
from gateway.routing.call import Answered, ToolCall
from gateway.routing.catalog import Catalog, Route

if TYPE_CHECKING:
    from gateway.routing.search_index import ToolSearch

logger = logging.getLogger("mcp_gateway.hub")

_ENVELOPE_META = frozenset({"progressToken"})  # progress is re-tokened on the backend hop
ChangeListener = Callable[[], Awaitable[None]]
LIST_CHANGED = (  # what a listener announces to its clients when the hub's lists change
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
)


def loaded_config(config: GatewayConfig) -> dict[str, str]:
    """The SHA-256 of the validated config (after `${VAR}` and env overrides, canonical JSON) and the UTC
    time it was loaded: two replicas with the same hash run the same configuration."""
    canonical = json.dumps(config.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    loaded_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"hash": hashlib.sha256(canonical.encode()).hexdigest(), "loaded_at": loaded_at}


class _Meters:
    """The metric children one exposed tool's calls update (`Hub._count`)."""

    __slots__ = ("latency", "ok", "server", "tool_latency")

    def __init__(self, exposed: str, server: str) -> None:
        self.server = server
        self.ok = metrics.child(metrics.CALLS, exposed, "ok")
        self.latency = metrics.child(metrics.LATENCY, server)
        self.tool_latency = metrics.child(metrics.TOOL_LATENCY, exposed)


class Hub:
    """Owns the backends and routes tool calls to them."""

    def __init__(
        self,
        config: GatewayConfig,
        tracer: tracing.CallHooks = tracing.NO_TRACING,
        stderr: Callable[[str], TextIO] | None = None,
        era: ClientEra | None = None,
    ) -> None:
        self.config = config
        self._era = era  # over stdio, the one client's protocol era, which every backend session speaks
        self.tracer = tracer  # the call path's stage hooks: spans when tracing is on
        self.settings = config.gateway
        search = self.settings.discovery.mode == "search"
        self.recent = CallLog()  # the status page's recent calls (the guard records each)
        self.loaded = loaded_config(config)  # /health: which config this hub runs, since when
        self.published = PublishedFigures(self.settings.status_interval, self.settings.call_timeout)  # statusTool
        self.discovery: ToolSearch | None = None  # search mode's index (numpy and the model: only then)
        if search:
            from gateway.routing.search_index import ToolSearch

            self.discovery = ToolSearch(self.settings.discovery)
        self.catalog = Catalog(self.settings.name_separator, frozenset(META_TOOLS) if search else frozenset())
        self._stderr = stderr
        self.backends = [self._backend(name, server) for name, server in config.enabled_servers.items()]
        self.by_name = {backend.name: backend for backend in self.backends}
        self._group: anyio.abc.TaskGroup | None = None  # where the backends run (set by `run`)
        self._scopes: dict[Backend, anyio.CancelScope] = {}  # each backend's, to stop it alone (reload)
        self.resilience: Resilience[ToolCall] = Resilience(
            self.settings, {name: backend.config for name, backend in self.by_name.items()}, self._forward
        )
        self.collector = ResilienceCollector(self.resilience)  # rendered at /metrics beside the registry
        self._listeners: list[ChangeListener] = []
        self.started = anyio.Event()  # set once every backend is up or has failed its first start
        self._changed = anyio.Event()  # set (and replaced) whenever a backend's state or lists change
        self._sessions_seen: dict[str, int] = {}  # backend -> sessions it had opened at its last change
        self.draining = False
        self.calls_in_flight = dict.fromkeys(self.by_name, 0)  # per backend; shutdown waits for them
        self._meters: dict[str, _Meters] = {}  # exposed tool -> its metric children (`_count`)
        for name in self.by_name:
            metrics.IN_FLIGHT.labels(name).set_function(functools.partial(self.calls_in_flight.__getitem__, name))

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every backend concurrently; report started once each is up or has failed once.

        A front that must answer at once runs this with `start_soon` instead: backends join the catalog as
        they come up (listeners announce each change), and calls for tools not listed yet wait for them
        (`wait_for_tool`)."""
        async with anyio.create_task_group() as group:
            self._group = group
            group.start_soon(self.resilience.run)
            for backend in self.backends:
                group.start_soon(self._supervise, backend, self._scopes.setdefault(backend, anyio.CancelScope()))
            with anyio.move_on_after(self.settings.startup_timeout + 1):
                for backend in self.backends:
                    await backend.ready.wait()
            self.catalog.rebuild(self.backends)
            if self.catalog.conflicts:  # a renamed tool or a meta-tool's name clashes: refuse to start
                where, problem = self.catalog.conflicts[0]
                raise ConfigError("config", where, problem)
            if self.discovery is not None:  # build the search index now, not on the first search
                group.start_soon(self.discovery.index, self.catalog.tools, self.catalog.version)
            self.started.set()
            task_status.started()

    def _backend(self, name: str, server: ServerConfig) -> Backend:
        return Backend(name, server, self.settings, on_change=self._backend_changed, stderr=self._stderr, era=self._era)

    async def _supervise(self, backend: Backend, scope: anyio.CancelScope) -> None:
        with scope:
            tool = backend.config.status_tool
            if tool is None:
                await backend.run()
                return
            async with anyio.create_task_group() as group:  # the backend and the poll of its statusTool
                group.start_soon(backend.run)
                await backend.ready.wait()
                fetch = functools.partial(backend.call_tool, tool, {})
                group.start_soon(self.published.poll, backend.name, fetch, lambda: backend.state == "up")

    async def stage(self, servers: dict[str, ServerConfig]) -> dict[str, Backend]:
        """Start backends for `servers` while serving (config reload) without listing them yet: each is
        returned once it is up or has failed its first start (bounded by `startup_timeout`). `adopt` lists
        them, `unstage` stops them; until then their changes reach no client."""
        assert self._group is not None
        staged = {name: self._backend(name, server) for name, server in servers.items()}
        for backend in staged.values():
            self._group.start_soon(self._supervise, backend, self._scopes.setdefault(backend, anyio.CancelScope()))
        with anyio.move_on_after(self.settings.startup_timeout + 1):
            for backend in staged.values():
                await backend.ready.wait()
        return staged

    def unstage(self, staged: dict[str, Backend]) -> None:
        """Stop backends `stage` started and that were not adopted."""
        for backend in staged.values():
            self._scopes.pop(backend).cancel()
            serving = self.by_name.get(backend.name)
            if serving is not None:  # the staged one's start set the gauge of the name
                metrics.BACKEND_UP.labels(backend.name).set(1 if serving.state == "up" else 0)

    def adopt(self, staged: dict[str, Backend], order: list[str]) -> None:
        """List staged backends (a backend of the same name must have been removed first), the backends in
        `order` (the config's); the catalog is rebuilt."""
        for name, backend in staged.items():
            assert name not in self.by_name, name
            self.by_name[name] = backend
            self.resilience.add_server(name, backend.config)
            self.calls_in_flight.setdefault(name, 0)  # kept after a removal: calls still in flight count down
            metrics.IN_FLIGHT.labels(name).set_function(functools.partial(self.calls_in_flight.__getitem__, name))
            metrics.BACKEND_UP.labels(name).set(1 if backend.state == "up" else 0)
        self.backends = [self.by_name[name] for name in order if name in self.by_name]
        self.catalog.rebuild(self.backends)

    def remove_backend(self, name: str) -> None:
        """Stop one backend (its process and session); its tools leave the catalog at the next `announce`."""
        backend = self.by_name.pop(name)
        self.backends.remove(backend)
        scope = self._scopes.pop(backend, None)
        if scope is not None:
            scope.cancel()
        self.published.forget(name)
        backend.tools, backend.prompts, backend.resources, backend.resource_templates = [], [], [], []
        self.catalog.rebuild(self.backends)

    async def announce(self) -> None:
        """Tell every listener (the connected clients) that the exposed lists changed."""
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception as error:
                logger.debug("catalog listener failed: %s", error)

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
        if self.by_name.get(backend.name) is not backend:  # stopped by a reload: its lists are gone already
            return
        if self.catalog.rebuild(self.backends):  # backends join as they come up, announced to the clients
            await self.announce()

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
        """The `/health` document; each backend's `reasons` say why it makes the gateway `degraded` (not
        up, or problems it publishes through its statusTool: `published`)."""
        from gateway import __version__

        backends: dict[str, Any] = {}
        for backend in self.backends:
            doc: dict[str, Any] = {
                "state": backend.state,
                "transport": backend.transport,
                "tools": len(backend.tools),
                "last_error": backend.last_error,
                "restarts": backend.restarts,
            }
            reasons = [] if backend.state == "up" else [f"{backend.state}: {backend.last_error or 'not up yet'}"]
            published = self.published.health(backend.name)
            if published is not None:
                doc["published"] = published
                reasons += published["problems"]
            doc["reasons"] = reasons
            backends[backend.name] = doc
        return {
            "status": "degraded" if any(doc["reasons"] for doc in backends.values()) else "ok",
            "backends": backends,
            **self.resilience.health(),
            "config": self.loaded,
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
        input_round: InputRound | None = None,
    ) -> dict[str, Any]:
        """Route one `tools/call` and return the raw `CallToolResult` dict (tool errors included).

        `identity` is the authenticated client's name when there is one (cache keys). The one call path of
        every front transport: route (and answer from L1), then the resilience layer, then the backend; each
        stage reported to `self.tracer`. `input_round` is a 2026-07-28 caller's part in input rounds: it gets
        a backend's `input_required` as is; without one, the gateway answers those rounds by asking the caller.
        """
        hooks = self.tracer
        if hooks is tracing.NO_TRACING:  # the same stages, without entering the no-op spans (~14 calls a call)
            routed = self._route(name, arguments or {}, meta, on_progress, identity, input_round)
            if isinstance(routed, Answered):
                return routed.result
            result, outcome = await self._dispatch(routed)
            if outcome == INPUT_REQUIRED:
                result, _ = await self._input_required(routed, result, input_round)
            return result
        with hooks.call(name, meta) as traced:
            with hooks.stage(tracing.ROUTE) as stage:
                routed = self._route(name, arguments or {}, meta, on_progress, identity, input_round)
                server = routed.server
                if server is not None:
                    traced.backend(server)
                    stage.backend(server)
                if isinstance(routed, Answered):
                    stage.ended(routed.outcome)
                    traced.ended(routed.outcome, cache_hit=routed.outcome == "ok")
                    return routed.result
            with hooks.stage(tracing.BACKEND_REQUEST, server) as stage:
                result, outcome = await self._dispatch(routed)
                if outcome == INPUT_REQUIRED:
                    result, outcome = await self._input_required(routed, result, input_round)
                stage.ended(outcome)
            traced.ended(outcome)
            return result

    def _route(
        self,
        name: str,
        arguments: dict[str, Any],
        meta: dict[str, Any] | None,
        on_progress: ProgressCallback | None,
        identity: str | None,
        input_round: InputRound | None = None,
    ) -> ToolCall | Answered:
        """The `ToolCall` to send on, or the answer when the call ends here (unknown tool or a fresh cache
        hit). The arguments are checked against the tool's schema only when the call has to reach the
        backend (`ToolCall.problem`, asked by the resilience layer): a cached answer to the same arguments
        needs no check. A retry after `input_required` never touches the cache."""
        route = self.catalog.resolve(name)
        if route is None:
            metrics.child(metrics.CALLS, "_unknown", "unknown_tool").inc()
            logger.info("tools/call %s: unknown tool", name)
            return Answered(tool_error(f"Unknown tool: '{name}'"), "unknown_tool")
        server = route.backend.name
        policy = self.resilience.policy(route)
        key = None
        echo = input_round if input_round is not None and input_round.retry else None
        if policy.cacheable and echo is None:
            began = time.perf_counter()
            key = self.resilience.cache.key(policy, arguments, identity)
            hit = self.resilience.cache.fresh(key)  # L1: no await (hits are counted in the cache metrics)
            if hit is not None:
                self._count(route, "ok", time.perf_counter() - began)
                return Answered(hit, "ok", server)
        if meta:
            meta = {k: v for k, v in meta.items() if k not in _ENVELOPE_META and not k.startswith(RESERVED_META)}
        return ToolCall(route, arguments, meta or None, identity, on_progress, policy, key, echo)

    async def _input_required(
        self, call: ToolCall, result: dict[str, Any], input_round: InputRound | None
    ) -> tuple[dict[str, Any], str]:
        """The backend asked for the client's input. A 2026-07-28 caller (`input_round`) gets the request as
        is, unless it needs what the caller did not declare; for any other the gateway asks the caller on its
        session and sends the call again (a call of its own through the resilience layer, never cached) with
        the answers, round after round."""
        backend = call.route.backend
        if input_round is not None:
            method = input_round.undeclared(result)
            if method is None:
                return result, INPUT_REQUIRED
            text = f"backend '{backend.name}' needs '{method}' from the client, which did not declare it"
            return tool_error(text), "error"

        async def again(echo: InputRound) -> tuple[dict[str, Any], str]:
            return await self._dispatch(dataclasses.replace(call, echo=echo, key=None))

        timeout = backend.config.timeout or self.settings.call_timeout
        try:
            return await rounds.drive(result, again, CURRENT_PEER.get(), timeout, backend.name)
        except MCPError as error:
            return tool_error(f"'{call.exposed}' needs input: {error.error.message}"), "error"

    async def _dispatch(self, call: ToolCall) -> tuple[dict[str, Any], str]:
        """Send a routed call through the resilience layer, counted in flight; record outcome and latency."""
        route = call.route
        server = route.backend.name
        in_flight = self.calls_in_flight
        in_flight[server] += 1
        began = time.perf_counter()
        try:
            result, outcome = await self.resilience.call(call)
        finally:
            in_flight[server] -= 1
        elapsed = time.perf_counter() - began
        if outcome == "invalid_arguments":  # refused before the backend: counted, not timed
            metrics.child(metrics.CALLS, route.exposed, outcome).inc()
        else:
            self._count(route, outcome, elapsed)
        if outcome != "ok":
            logger.info("tools/call %s: %s after %.0f ms", route.exposed, outcome, elapsed * 1000)
        return result, outcome

    def _count(self, route: Route, outcome: str, elapsed: float) -> None:
        """One finished call in the metrics: its outcome, and its latency by backend and by exposed tool (the
        children of a route resolved once, not three label look-ups per call)."""
        meters = self._meters.get(route.exposed)
        if meters is None or meters.server != route.backend.name:
            meters = self._meters[route.exposed] = _Meters(route.exposed, route.backend.name)
        (meters.ok if outcome == "ok" else metrics.child(metrics.CALLS, route.exposed, outcome)).inc()
        meters.latency.observe(elapsed)
        meters.tool_latency.observe(elapsed)

    @property
    def in_flight(self) -> int:
        """Tool calls waiting on a backend right now."""
        return sum(self.calls_in_flight.values())

    async def wait_idle(self, poll: float = 0.05) -> None:
        """Return once no tool call is waiting on a backend (callers bound it with a timeout)."""
        while self.in_flight:
            await anyio.sleep(poll)

    async def _forward(self, call: ToolCall, timeout: float | None) -> tuple[dict[str, Any], str]:
        """One call to the backend: (result, outcome); the resilience layer decides what to do with it."""
        route = call.route
        backend = route.backend
        meta = self.tracer.propagate(call.meta)
        try:
            result = await backend.call_tool(
                route.tool, call.arguments, meta=meta, on_progress=call.on_progress, timeout=timeout, echo=call.echo
            )
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
        if isinstance(result, dict) and rounds.input_required(result):  # SEP-2322: it needs the client's input
            if (problem := rounds.invalid(result)) is not None:
                message = f"backend '{backend.name}' asked for input on '{route.exposed}' invalidly: {problem}"
                return tool_error(message), "bad_response"
            return rounds.cleaned(result), INPUT_REQUIRED
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
