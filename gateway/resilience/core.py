"""The resilient call path the hub runs every tool call through.

cache (L1 hit answered in `Hub.call_tool` without awaiting) -> single-flight -> L2 -> argument check ->
breaker -> bulkhead -> backend call with its timeout -> retry (safe tools only) -> store / stale-if-error /
invalidate-on-write

Redis names: each server's cache entries, generation, breakers and events go by its backend's name
(`gateway.resilience.scope.redis_name`, computed here when a server is added), so only replicas with the
same backend entry share them; an event naming a backend this gateway does not run is ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio

from gateway.backends.messages import tool_error
from gateway.resilience.breakers import BreakerOpen, Breakers
from gateway.resilience.bulkhead import Bulkhead, Overloaded
from gateway.resilience.cache import SCOPE_HINT, SHARED, Cache, Entry, Key, copy_result, stale_result
from gateway.resilience.policy import ServerPolicy, ToolPolicy, failure_kind, resolve
from gateway.resilience.retry import backoff
from gateway.resilience.scope import redis_name

if TYPE_CHECKING:
    from gateway.config.loader import GatewaySettings, ServerConfig
    from gateway.resilience.redis_link import RedisLink

logger = logging.getLogger("mcp_gateway.resilience")


class Route(Protocol):
    """What the resilience layer reads of a routed tool (a `gateway.routing.catalog.Route`)."""

    exposed: str
    tool: str
    definition: dict[str, Any]

    @property
    def annotations(self) -> dict[str, Any]: ...

    @property
    def server(self) -> str: ...


class Call(Protocol):
    """What the resilience layer reads of a call (a `gateway.routing.call.ToolCall`); the call itself goes on
    whole to `forward`."""

    @property
    def exposed(self) -> str: ...

    @property
    def policy(self) -> ToolPolicy: ...

    @property
    def key(self) -> Key | None: ...

    @property
    def identity(self) -> str | None: ...

    def problem(self) -> str | None: ...


C = TypeVar("C", bound=Call)
Forward = Callable[[C, float | None], Awaitable[tuple[dict[str, Any], str]]]
REFUSED = ("breaker_open", "overloaded", "restarting")  # outcomes of calls that never reached the backend


class _Flight:
    __slots__ = ("done", "outcome", "result")

    def __init__(self) -> None:
        self.done = asyncio.Event()  # asyncio's own: anyio's looks up its backend at each creation (every L1 miss)
        self.result: dict[str, Any] | None = None
        self.outcome = ""


class Resilience(Generic[C]):
    """The resilient path of the calls of one hub; `forward` makes the backend call itself."""

    def __init__(self, settings: GatewaySettings, servers: Mapping[str, ServerConfig], forward: Forward[C]) -> None:
        self.forward = forward
        self.settings = settings
        self.servers: dict[str, ServerPolicy] = {}
        self.scopes: dict[str, str] = {}  # server -> its backend's name in Redis
        self.by_scope: dict[str, str] = {}  # and back (for the events of the other replicas)
        self.breakers = Breakers()
        self.bulkheads: dict[str, Bulkhead] = {}
        url = settings.redis_url  # the config loader fills it from env REDIS_URL
        self.link: RedisLink | None = None
        if url:
            from gateway.resilience.redis_link import RedisLink  # redis-py, only when Redis is configured

            self.link = RedisLink(url, settings.redis)
        self.cache = Cache(settings.cache, self.link, self.scopes)
        self._policies: dict[str, tuple[dict[str, Any], ToolPolicy]] = {}
        for name, server in servers.items():
            self.add_server(name, server)
        if self.link is not None:
            self.breakers.publish = lambda name, state, opened: self.link.post(  # type: ignore[union-attr]
                "breaker", {"k": "breaker", "n": self._scoped(name), "s": state, "o": opened}
            )
            self.link.on_message = self._on_remote
            self.link.on_connect = self._resync
        self._inflight: dict[Key, _Flight] = {}
        self.retries = 0

    def add_server(self, name: str, server: ServerConfig) -> None:
        """Build (or rebuild, after a config reload) one server's policy, breaker and bulkhead. An entry
        naming another backend than before (`redis_name` changed) starts afresh: new Redis names, no cached
        result and no breaker state of the old backend."""
        scope = redis_name(name, server)
        if self.scopes.get(name) != scope:
            self.by_scope.pop(self.scopes.get(name, ""), None)
            self.scopes[name], self.by_scope[scope] = scope, name
            self.cache.new_backend(name)
            self.breakers.forget(name)
        settings = self.settings
        sp = ServerPolicy.build(
            settings.breaker, settings.retry, settings.bulkhead, settings.cache, settings.servers.get(name)
        )
        self.servers[name] = sp
        if sp.breaker.enabled:
            self.breakers.get(name, sp.breaker)  # listed in /health from the start
        self.bulkheads[name] = Bulkhead(
            name, sp.bulkhead.max_concurrent, sp.bulkhead.max_queue, sp.bulkhead.queue_timeout
        )
        self._policies = {}  # tool policies resolve again against the new server policy

    async def run(self) -> None:
        """Background work (Redis events); runs for the hub's lifetime."""
        if self.link is None:
            return
        try:
            await self.link.serve()
        finally:
            await self.link.aclose()

    # ------------------------------------------------------------------ policy

    def policy(self, route: Route) -> ToolPolicy:
        cached = self._policies.get(route.exposed)
        if cached is not None and cached[0] is route.definition:
            return cached[1]
        server = route.server
        sp = self.servers.get(server)
        if sp is None:  # a backend the config does not list (tests building hubs by hand)
            sp = self.servers[server] = next(iter(self.servers.values()))
        policy = resolve(server, route.tool, route.annotations, sp)
        self._policies[route.exposed] = (route.definition, policy)
        return policy

    # ------------------------------------------------------------------ calls

    async def call(self, call: C) -> tuple[dict[str, Any], str]:
        """One tool call that missed L1 (or is not cacheable): (result, outcome)."""
        policy, key = call.policy, call.key
        if key is None:
            if (problem := call.problem()) is not None:
                return tool_error(problem), "invalid_arguments"
            result, outcome, _ = await self._guarded(call)
            if policy.invalidates and outcome not in REFUSED:
                await self.cache.invalidate(policy.server)
            return result, outcome
        while (flight := self._inflight.get(key)) is not None:
            await flight.done.wait()  # an identical call is in flight: share its answer
            if flight.result is not None:
                if key[3] == SHARED and flight.result.get(SCOPE_HINT) == "private":
                    break  # another caller's private answer: make this call on its own
                return copy_result(flight.result), flight.outcome
            # its caller went away before the answer: try again (perhaps as the leader)
            if (hit := self.cache.fresh(key)) is not None:
                return hit, "ok"
        else:
            return await self._lead(call, key)
        result, outcome, _ = await self._guarded(call)
        return result, outcome

    async def _lead(self, call: C, key: Key) -> tuple[dict[str, Any], str]:
        """The one call of those in flight with this key that looks in L2 and asks the backend."""
        flight = self._inflight[key] = _Flight()
        try:
            result, outcome = await self._miss(call, key)
            flight.result, flight.outcome = copy_result(result), outcome
            return result, outcome
        finally:
            del self._inflight[key]
            flight.done.set()

    async def _miss(self, call: C, key: Key) -> tuple[dict[str, Any], str]:
        policy = call.policy
        cache = self.cache
        stale: Entry | None = cache.stale_l1(key)
        fresh, l2_stale = await cache.get_l2(key)
        if fresh is not None:
            return fresh, "ok"
        if (problem := call.problem()) is not None:
            return tool_error(problem), "invalid_arguments"
        cache.misses += 1
        stale = stale or l2_stale
        gen = cache.gens.get(policy.server, "0")
        result, outcome, failure = await self._guarded(call)
        if outcome == "ok":
            await cache.put(policy, key, gen, result, call.identity)
        elif failure is not None and stale is not None and stale.gen == cache.gens.get(policy.server):
            cache.stale += 1
            logger.info("serving a stale %s result: %s", call.exposed, failure)
            return stale_result(stale.result), "stale"
        return result, outcome

    async def _guarded(self, call: C) -> tuple[dict[str, Any], str, str | None]:
        """Breaker, bulkhead, timeout and retries around the backend: (result, outcome, failure kind)."""
        policy = call.policy
        sp = policy.server_policy
        breaker = self.breakers.get(policy.breaker_name, sp.breaker) if sp.breaker.enabled else None
        bulkhead = self.bulkheads.get(policy.server)
        attempts = sp.retry.attempts if policy.retry else 1
        deadline = time.monotonic() + sp.retry.max_total
        attempt = 0
        failed: str | None = None  # the failure of the previous attempt, counted once when the call ends
        while True:
            attempt += 1
            probe = False
            if breaker is not None:
                try:
                    probe = breaker.admit()
                except BreakerOpen as error:
                    if failed is not None:
                        breaker.record(failed, False)
                    return tool_error(str(error)), "breaker_open", "breaker_open"
            if bulkhead is not None and not bulkhead.take():  # a free slot is taken without an await
                try:
                    await bulkhead.acquire()
                except Overloaded as error:
                    if breaker is not None:
                        breaker.release_probe(probe)
                    return tool_error(f"{error}; try again later"), "overloaded", "overloaded"
                except BaseException:
                    if breaker is not None:
                        breaker.release_probe(probe)
                    raise
            try:
                result, outcome = await self.forward(call, policy.timeout)
            except BaseException:
                if breaker is not None:
                    breaker.release_probe(probe)
                raise
            finally:
                if bulkhead is not None:
                    bulkhead.release()
            if outcome == "restarting":  # the supervisor is on it: neither a failure nor a success
                if breaker is not None:
                    breaker.release_probe(probe)
                    if failed is not None:
                        breaker.record(failed, False)
                return result, outcome, None
            failure = None if outcome == "ok" else failure_kind(outcome, result, sp)
            retry = failure is not None and attempt < attempts and failure in sp.retry.on
            delay = backoff(sp.retry, attempt) if retry else 0.0
            if retry and time.monotonic() + delay >= deadline:
                retry = False
            if breaker is not None:
                if retry:  # one client call counts once, however many attempts it makes
                    breaker.release_probe(probe)
                else:
                    breaker.record(failure, probe)
            if not retry:
                return result, outcome, failure
            failed = failure
            self.retries += 1
            logger.info(
                "retrying %s in %.2f s after %s (attempt %d of %d)", call.exposed, delay, failure, attempt + 1, attempts
            )
            await anyio.sleep(delay)

    def backend_up(self, server: str) -> None:
        """The supervisor (re)started `server` (handshake and lists done): close its breakers."""
        for name, breaker in self.breakers.by_name.items():
            if name == server or name.startswith(server + "/"):
                breaker.close()

    # ------------------------------------------------------------------ replicas

    def _scoped(self, name: str) -> str:
        """A breaker's name in Redis: `server` or `server/tool` with the server's backend name."""
        server, slash, tool = name.partition("/")
        return self.scopes.get(server, server) + slash + tool

    def _on_remote(self, message: dict[str, Any]) -> None:
        kind, scoped = message.get("k"), message.get("n")
        if not isinstance(scoped, str):
            return
        head, slash, tool = scoped.partition("/")
        server = self.by_scope.get(head)
        if server is None:
            return  # a backend this gateway does not run (another deployment's, or the old one's of a reload)
        name = server + slash + tool
        if kind == "gen" and isinstance(message.get("g"), str):
            self.cache.on_remote_gen(name, message["g"])
        elif kind == "breaker" and isinstance(message.get("s"), str):
            opened = message.get("o")
            if opened is not None and not _timestamp(opened):
                logger.warning("dropped a breaker event for %s: its open time %.40r is no timestamp", name, opened)
                return
            self.breakers.apply_remote(name, message["s"], opened)

    async def _resync(self) -> None:
        assert self.link is not None
        await self.cache.resync()
        names = sorted(set(self.breakers.by_name) | set(self.servers))
        keys = [f"{self.link.prefix}:breaker:{self._scoped(name)}" for name in names]
        ok, values = await self.link.run(self.link.mget, *keys)
        if not ok:
            return
        for raw in values:
            if raw is not None:
                try:
                    self._on_remote(json.loads(raw))
                except ValueError:
                    continue

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "breakers": {name: breaker.snapshot() for name, breaker in sorted(self.breakers.by_name.items())},
            "bulkheads": {
                name: {
                    "active": b.active,
                    "queued": b.queued,
                    "max_concurrent": b.max_concurrent,
                    "max_queue": b.max_queue,
                    "rejected": b.rejected,
                }
                for name, b in self.bulkheads.items()
            },
            "cache": self.cache.snapshot(),
            "retries": self.retries,
        }
        if self.link is None:
            doc["redis"] = {"state": "disabled"}
        else:
            doc["redis"] = {
                "state": "up" if self.link.up and self.link.listening else "down",
                "breaker": self.link.guard.state,
                "ops": self.link.ops,
                "reads": self.link.reads,  # L2 lookups, sent in `batches` MGETs
                "batches": self.link.batches,
                "errors": self.link.errors,
                "last_error": self.link.last_error,
            }
        return doc


def _timestamp(value: object) -> bool:
    """A POSIX time `datetime.fromtimestamp` takes (finite, from 1970 to the year 9999), not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 253402300800
