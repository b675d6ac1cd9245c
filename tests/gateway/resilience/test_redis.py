"""Two gateway replicas sharing one real Redis: shared breaker state, a shared L2 cache, invalidation across
replicas, and Redis killed and restarted under load; two deployments sharing it whose same-named backends
differ: nothing shared."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import redis

from gateway.config.loader import load_config
from gateway.resilience.scope import redis_name
from tests.gateway.resilience.conftest import call, client, faulty_http, health, stats, until
from tests.helpers.procs import ROOT, GatewayProcess, stop_gateways, write_config
from tests.helpers.redis_proc import RedisProcess

TOOLS = {"stats": {"cache": False}, "set_mode": {"invalidates": False}}


@contextmanager
def two_replicas(tmp_path: Path, redis_url: str, **gateway: object) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    with faulty_http() as url:
        config = write_config(
            tmp_path,
            {"faulty": {"url": url}},
            gateway={
                "redis_url": redis_url,
                "retry": {"attempts": 1},
                "servers": {"faulty": {"tools": TOOLS}},
                **gateway,
            },
        )
        first, second = GatewayProcess(config, wait_path=None), GatewayProcess(config, wait_path=None)
        try:  # started together, so they come up in parallel
            first.wait_ready()
            second.wait_ready()
            yield first, second
        finally:
            stop_gateways(first, second)


async def redis_state(gateway: GatewayProcess) -> str:
    return (await health(gateway))["redis"]["state"]


async def test_replicas_share_cache_invalidations_and_breakers(tmp_path: Path, redis_server: RedisProcess) -> None:
    with two_replicas(tmp_path, redis_server.url, breaker={"fail_max": 2, "reset_timeout": 60}) as (a, b):
        await until(lambda: _both_up(a, b))
        async with client(a) as ca, client(b) as cb:
            assert (await call(ca, "faulty_read", {"key": "x"}))[1] == "x#1"
            assert (await call(cb, "faulty_read", {"key": "x"}))[1] == "x#1"  # from Redis, not the backend
            assert (await stats(cb))["read"] == 1
            assert (await health(b))["cache"]["l2_hits"] == 1

            assert (await call(cb, "faulty_get", {"key": "k"}))[1] == ""  # cached in b
            assert (await call(ca, "faulty_put", {"key": "k", "value": "new"}))[1] == "stored"

            async def b_sees_the_write() -> bool:
                return (await call(cb, "faulty_get", {"key": "k"}))[1] == "new"

            await until(b_sees_the_write)

            for _ in range(2):
                assert (await call(ca, "faulty_fail"))[0]
            assert (await health(a))["breakers"]["faulty"]["state"] == "open"
            await until(lambda: _breaker_state(b, "open"))
            error, text, _ = await call(cb, "faulty_read", {"key": "never-called"})
            assert error and "failing fast" in text and "'faulty'" in text


async def test_deployments_with_different_backends_of_one_name_share_nothing(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    """Deployment A (gateways a and a2, one config) and B (gateway b) on one Redis, default prefix, each a
    server `faulty` of its own (its own backend process, so another `url`): a2 shares a's cached answers and
    a's breaker; b gets neither, and b's write leaves a's cache alone."""
    gateway = {
        "redis_url": redis_server.url,
        "retry": {"attempts": 1},
        "breaker": {"fail_max": 2, "reset_timeout": 60},
        "servers": {"faulty": {"tools": {**TOOLS, "fail": {"invalidates": False}}}},  # only b writes
    }
    with ExitStack() as stack:
        gateways = []
        for name in ("a", "b"):
            url = stack.enter_context(faulty_http())
            (tmp_path / name).mkdir()
            gateways.append(write_config(tmp_path / name, {"faulty": {"url": url}}, gateway))
        a, a2, b = (GatewayProcess(config, wait_path=None) for config in (gateways[0], *gateways))
        stack.callback(stop_gateways, a, a2, b)
        for g in (a, a2, b):
            g.wait_ready()
        await until(lambda: _both_up(a, a2))
        await until(lambda: _both_up(a, b))
        async with client(a) as ca, client(a2) as ca2, client(b) as cb:
            assert (await call(ca, "faulty_read", {"key": "x"}))[1] == "x#1"
            assert (await call(ca2, "faulty_read", {"key": "x"}))[1] == "x#1"  # a's entry, from Redis
            assert (await health(a2))["cache"]["l2_hits"] == 1
            assert (await call(cb, "faulty_read", {"key": "x"}))[1] == "x#1"  # b's own backend answered
            assert (await stats(cb))["read"] == 1 and (await health(b))["cache"]["l2_hits"] == 0
            assert (await call(cb, "faulty_put", {"key": "k", "value": "b's"}))[1] == "stored"  # b invalidates

            for _ in range(2):
                assert (await call(ca, "faulty_fail"))[0]
            assert (await health(a))["breakers"]["faulty"]["state"] == "open"
            await until(lambda: _breaker_state(a2, "open"))  # so b's write event, published before, reached a2
            assert (await call(ca2, "faulty_read", {"key": "x"}))[1] == "x#1"  # still cached: b's write was b's

            # a marker for b only, published after a's breaker event: once b acts on it, it has had a's event
            (gen_key,) = redis.Redis.from_url(redis_server.url).keys("mcp-gateway:gen:*")  # b's: only b wrote
            b_name = gen_key.decode().split("{", 1)[1].rstrip("}")
            redis.Redis.from_url(redis_server.url).publish(
                "mcp-gateway:events", json.dumps({"k": "gen", "n": b_name, "g": "1000", "r": "test"})
            )
            reads = (await stats(cb))["read"]

            async def b_moved_to_the_marker() -> bool:
                error, text, _ = await call(cb, "faulty_read", {"key": "x"})
                assert not error, text  # b's breaker is not a's
                return (await stats(cb))["read"] > reads

            await until(b_moved_to_the_marker)
            assert (await health(b))["breakers"]["faulty"]["state"] == "closed"


async def test_redis_killed_and_restarted_under_load(tmp_path: Path, redis_server: RedisProcess) -> None:
    settings = {"redis": {"timeout": 0.2, "retry_after": 0.3}}
    with two_replicas(tmp_path, redis_server.url, **settings) as (a, b):
        await until(lambda: _both_up(a, b))
        async with client(a) as ca, client(b) as cb:
            n = 0

            async def round_of_calls() -> None:
                nonlocal n
                n += 1
                for c in (ca, cb):
                    for key in ("hot", f"k{n}"):
                        error, text, _ = await call(c, "faulty_read", {"key": key})
                        assert not error, text

            for _ in range(3):
                await round_of_calls()
            redis_server.kill()
            for _ in range(5):
                await round_of_calls()

            async def both_down() -> bool:
                await round_of_calls()
                return await redis_state(a) == "down" and await redis_state(b) == "down"

            await until(both_down)
            redis_server.start()  # same port, empty: an outage that lost the data

            async def both_up_again() -> bool:
                await round_of_calls()
                return await _both_up(a, b)

            await until(both_up_again)
            before = (await stats(ca))["read"]
            l2_before = (await health(b))["cache"]["l2_hits"]
            assert (await call(ca, "faulty_read", {"key": "after"}))[1].startswith("after#")
            assert not (await call(cb, "faulty_read", {"key": "after"}))[0]
            assert (await stats(ca))["read"] == before + 1  # b's answer came from Redis again
            assert (await health(b))["cache"]["l2_hits"] == l2_before + 1


async def _both_up(a: GatewayProcess, b: GatewayProcess) -> bool:
    return await redis_state(a) == "up" and await redis_state(b) == "up"


async def _breaker_state(gateway: GatewayProcess, state: str) -> bool:
    return (await health(gateway))["breakers"]["faulty"]["state"] == state


async def test_backend_cache_hints_hold_through_redis(redis_server: RedisProcess) -> None:
    """Two hubs on one Redis: a hinted entry read from L2 tells what is left of its ttlMs, `ttlMs: 0` never
    reaches Redis, and a `private` answer of a tool configured `shared` is stored under its caller only."""
    from gateway.config.loader import parse_config
    from gateway.routing.hub import Hub

    hinted = {"command": "python", "args": ["-m", "tests.backends.hinted"], "env": {"PYTHONPATH": str(ROOT)}}
    gateway = {
        "redis_url": redis_server.url,
        "redis": {"timeout": 5},  # a busy machine must not turn Redis off for this test
        "servers": {"hinted": {"tools": {"read": {"shared": True}}}},
    }
    config = parse_config({"mcpServers": {"hinted": hinted}, "gateway": gateway}, "mcp.json")
    a, b = Hub(config), Hub(config)

    def text(result: dict) -> str:
        return result["content"][0]["text"]

    def l2_hits() -> int:
        return b.resilience.cache.l2_hits

    async with anyio.create_task_group() as group:
        await group.start(a.run)
        await group.start(b.run)
        await until(lambda: a.resilience.link.listening and b.resilience.link.listening)  # type: ignore[union-attr]
        public = {"key": "p", "ttl_ms": 60_000, "scope": "public"}
        first = await a.call_tool("hinted_read", public)
        second = await b.call_tool("hinted_read", public)
        assert l2_hits() == 1 and text(second) == text(first)
        assert second["cacheScope"] == "public" and 0 < second["ttlMs"] <= 60_000

        never = {"key": "z", "ttl_ms": 0, "scope": "public"}
        await a.call_tool("hinted_read", never)
        await b.call_tool("hinted_read", never)
        assert l2_hits() == 1  # not stored: b asked its own backend

        mine = {"key": "m", "ttl_ms": 60_000, "scope": "private"}
        alice = await a.call_tool("hinted_read", mine, identity="alice")
        assert text(await b.call_tool("hinted_read", mine, identity="bob")) != text(alice)
        assert l2_hits() == 1  # bob was not given alice's entry
        assert text(await b.call_tool("hinted_read", mine, identity="alice")) == text(alice)
        assert l2_hits() == 2  # alice's own, from Redis
        group.cancel_scope.cancel()


async def test_malformed_events_on_the_channel_are_dropped_not_fatal(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    """Anything may publish on the events channel: a breaker event whose open time is no timestamp (too
    large, not finite, not a number) is dropped, and the listener keeps going (before, the handler's
    OverflowError took the link down and every replica stopped using Redis for `retry_after`)."""
    with faulty_http() as url:
        config = write_config(
            tmp_path, {"faulty": {"url": url}}, gateway={"redis_url": redis_server.url, "retry": {"attempts": 1}}
        )
        gateway = GatewayProcess(config)
        try:
            await until(lambda: _up(gateway))
            name = redis_name("faulty", load_config(config, {}).enabled_servers["faulty"])
            publisher = redis.Redis.from_url(redis_server.url)
            for opened in ("1e300", "NaN", "-1e300", "Infinity", '"soon"', "[1]", "true"):
                publisher.publish("mcp-gateway:events", f'{{"k":"breaker","n":"{name}","s":"open","o":{opened}}}')
            publisher.publish("mcp-gateway:events", b"\xff not json")
            publisher.publish("mcp-gateway:events", json.dumps({"k": "breaker", "n": name, "s": "open", "o": 1.0}))
            await until(lambda: _breaker_state(gateway, "open"))  # the valid event after them still arrives
            redis_health = (await health(gateway))["redis"]
            assert redis_health["state"] == "up" and redis_health["errors"] == 0, redis_health
        finally:
            stop_gateways(gateway)


async def _up(gateway: GatewayProcess) -> bool:
    return await redis_state(gateway) == "up"
