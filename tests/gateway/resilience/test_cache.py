"""The result cache in one gateway: hits, per-caller keys, single-flight, stale-if-error, invalidation."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests.gateway.resilience.conftest import call, client, faulty_server, health, stats, until
from tests.helpers.procs import ROOT, GatewayProcess, write_config

TOOLS = {"stats": {"cache": False}, "set_mode": {"invalidates": False}}


def gateway_for(tmp_path: Path, **cache: object) -> GatewayProcess:
    config = write_config(
        tmp_path,
        {"faulty": faulty_server()},
        gateway={
            "cache": {"ttl": 60, **cache},
            "breaker": {"fail_max": 50},
            "retry": {"attempts": 1},
            "servers": {"faulty": {"tools": TOOLS}},
        },
    )
    return GatewayProcess(config)


async def test_reads_are_cached_writes_are_not_and_a_write_invalidates(tmp_path: Path) -> None:
    gateway = gateway_for(tmp_path)
    try:
        async with client(gateway) as c:
            assert (await call(c, "faulty_read", {"key": "a"}))[1] == "a#1"
            assert (await call(c, "faulty_read", {"key": "a"}))[1] == "a#1"  # a hit
            assert (await call(c, "faulty_read", {"key": "b"}))[1] == "b#2"  # other arguments, other entry
            assert (await call(c, "faulty_put", {"key": "k", "value": "v1"}))[1] == "stored"
            assert (await call(c, "faulty_get", {"key": "k"}))[1] == "v1"
            assert (await call(c, "faulty_get", {"key": "k"}))[1] == "v1"
            assert (await stats(c))["get"] == 1
            # the write drops the server's entries: without invalidation this would answer v1 from the cache
            assert (await call(c, "faulty_put", {"key": "k", "value": "v2"}))[1] == "stored"
            assert (await call(c, "faulty_get", {"key": "k"}))[1] == "v2"
            assert (await call(c, "faulty_read", {"key": "a"}))[1] == "a#3"
            counts = await stats(c)
            assert counts["get"] == 2 and counts["put"] == 2
            doc = (await health(gateway))["cache"]
            assert doc["hits"] == 2 and doc["invalidations"] == 2
            assert doc["l1"]["entries"] >= 1 and doc["l1"]["bytes"] > 0
    finally:
        gateway.stop()


async def test_errors_are_never_cached(tmp_path: Path) -> None:
    gateway = gateway_for(tmp_path)
    try:
        async with client(gateway) as c:
            await call(c, "faulty_set_mode", {"mode": "fail"})
            error, text, _ = await call(c, "faulty_read", {"key": "e"})
            assert error and "503" in text
            await call(c, "faulty_set_mode", {"mode": "ok"})
            error, text, _ = await call(c, "faulty_read", {"key": "e"})
            assert not error and text == "e#2"
    finally:
        gateway.stop()


async def test_one_hundred_identical_concurrent_misses_make_one_backend_call(tmp_path: Path) -> None:
    gateway = gateway_for(tmp_path)
    try:
        async with client(gateway) as c:
            answers: list[str] = []

            async def one() -> None:
                answers.append((await call(c, "faulty_slow_read", {"key": "s", "seconds": 0.5}))[1])

            async with anyio.create_task_group() as group:
                for _ in range(100):
                    group.start_soon(one)
            assert answers == ["s#1"] * 100
            assert (await stats(c))["slow_read"] == 1
    finally:
        gateway.stop()


async def test_stale_result_is_served_while_the_backend_fails(tmp_path: Path) -> None:
    gateway = gateway_for(tmp_path, ttl=0.3, stale_grace=60)
    try:
        async with client(gateway) as c:
            assert (await call(c, "faulty_read", {"key": "s"}))[1] == "s#1"
            await call(c, "faulty_set_mode", {"mode": "fail"})

            async def served_stale() -> object:
                error, _, result = await call(c, "faulty_read", {"key": "s"})
                return result if not error and (result.meta or {}).get("mcp-gateway/cache") == "stale" else None

            result = await until(served_stale)  # once the entry expired, the 503 is answered with it
            assert result.content[0].text == "s#1"
            assert (await stats(c))["read"] >= 2  # the backend was asked, and failed
            error, text, _ = await call(c, "faulty_read", {"key": "never-cached"})
            assert error and "503" in text  # nothing to fall back on
            await call(c, "faulty_set_mode", {"mode": "ok"})
            error, text, result = await call(c, "faulty_read", {"key": "s"})
            assert not error and (result.meta or {}).get("mcp-gateway/cache") is None
            assert (await health(gateway))["cache"]["stale_served"] >= 1
    finally:
        gateway.stop()


async def test_cache_keys_cover_the_callers_identity_unless_shared() -> None:
    from gateway.config.loader import parse_config
    from gateway.routing.hub import Hub

    config = parse_config(
        {
            "mcpServers": {"faulty": faulty_server()},
            "gateway": {
                "servers": {"faulty": {"tools": {"slow_read": {"shared": True}}}},
            },
        },
        "mcp.json",
    )
    hub = Hub(config)

    def text(result: dict) -> str:
        return result["content"][0]["text"]

    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        assert text(await hub.call_tool("faulty_read", {"key": "a"}, identity="alice")) == "a#1"
        assert text(await hub.call_tool("faulty_read", {"key": "a"}, identity="alice")) == "a#1"
        assert text(await hub.call_tool("faulty_read", {"key": "a"}, identity="bob")) == "a#2"
        assert text(await hub.call_tool("faulty_read", {"key": "a"})) == "a#3"  # anonymous is a caller too
        shared = {"key": "s", "seconds": 0}
        assert text(await hub.call_tool("faulty_slow_read", shared, identity="alice")) == "s#1"
        assert text(await hub.call_tool("faulty_slow_read", shared, identity="bob")) == "s#1"
        group.cancel_scope.cancel()


async def test_a_private_answer_in_flight_is_not_handed_to_another_caller() -> None:
    """Identical concurrent calls of a tool configured `shared` share one backend call, unless its answer
    says `cacheScope: private`: then the other caller gets an answer of its own."""
    from gateway.config.loader import parse_config
    from gateway.routing.hub import Hub

    hinted = {"command": "python", "args": ["-m", "tests.backends.hinted"], "env": {"PYTHONPATH": str(ROOT)}}
    shared = {"servers": {"hinted": {"tools": {"read": {"shared": True}}}}}
    hub = Hub(parse_config({"mcpServers": {"hinted": hinted}, "gateway": shared}, "mcp.json"))
    answers: dict[str, str] = {}

    async def read(who: str, arguments: dict) -> None:
        answers[who] = (await hub.call_tool("hinted_read", arguments, identity=who))["content"][0]["text"]

    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        async with anyio.create_task_group() as calls:  # both in flight at once: bob waits for alice's call
            calls.start_soon(read, "alice", {"key": "p", "ttl_ms": 60_000, "scope": "public"})
            calls.start_soon(read, "bob", {"key": "p", "ttl_ms": 60_000, "scope": "public"})
        assert answers["alice"] == answers["bob"]  # public: one call for both
        async with anyio.create_task_group() as calls:
            calls.start_soon(read, "alice", {"key": "m", "ttl_ms": 60_000, "scope": "private"})
            calls.start_soon(read, "bob", {"key": "m", "ttl_ms": 60_000, "scope": "private"})
        assert answers["alice"] != answers["bob"]
        group.cancel_scope.cancel()
