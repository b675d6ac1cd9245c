"""Three gateway replicas (`serve --transport http` subprocesses) behind a round-robin client, over one real
Redis and over a real three-node Redis Cluster: a cached result, an open breaker and a spent rate limit are
shared by all of them; a replica SIGKILLed under a write load loses no acknowledged memory write and the
client carries on through the others."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth.keys import hash_token
from tests.gateway.resilience.conftest import faulty_http, until
from tests.helpers import local_http
from tests.helpers.procs import ROOT, START_TIMEOUT, GatewayProcess, stdio_echo_server, stop_gateways, write_config
from tests.helpers.redis_cluster import RedisCluster
from tests.helpers.redis_proc import RedisProcess

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
FULL = "full-0123456789abcdefghijklmnopqrstuvwxyz"
LIMITED = "limited-0123456789abcdefghijklmnopqrstuvwxyz"
CLIENTS = {
    "full": {"token_sha256": hash_token(FULL)},
    "limited": {"token_sha256": hash_token(LIMITED), "rate_limit": {"per_minute": 1, "burst": 4}},
}


class RoundRobin:
    """Stateless (2026-07-28) tools/call POSTs rotating over replicas; a replica that refuses the connection is
    dropped and the call goes to the next one (what a load balancer does after a failed health check)."""

    def __init__(self, bases: list[str], token: str = FULL) -> None:
        self.bases = list(bases)
        self.token = token
        self.turn = 0
        self.http = local_http.async_client(timeout=30)
        self.served_by: list[str] = []

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments or {}, "_meta": ENVELOPE},
        }
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/call",
            "Mcp-Name": name,
            "Authorization": f"Bearer {self.token}",
        }
        while self.bases:
            base = self.bases[self.turn % len(self.bases)]
            self.turn += 1
            try:
                response = await self.http.post(base + "/mcp", json=body, headers=headers)
            except httpx.TransportError:
                self.bases.remove(base)  # dead replica: carry on through the others
                continue
            assert response.status_code == 200, response.text
            self.served_by.append(base)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                lines = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
                return next(m for m in map(json.loads, lines) if m.get("id") == 1)["result"]
            return response.json()["result"]
        raise AssertionError("no replica left")

    async def aclose(self) -> None:
        await self.http.aclose()


def text(result: dict[str, Any]) -> str:
    return result["content"][0]["text"] if result.get("content") else ""


def health(gateway: GatewayProcess) -> dict[str, Any]:
    return local_http.get(gateway.base + "/health", timeout=5).json()


# ---------------------------------------------------------------------------------------------- shared state


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[GatewayProcess]]:
    """Three replicas over one faulty HTTP backend (one process, one set of counters) and a local echo."""
    directory = tmp_path_factory.mktemp(request.param)
    with ExitStack() as stack:
        if request.param == "redis-cluster":
            missing = RedisCluster.available()
            if missing:
                pytest.skip(missing)
            cluster = RedisCluster(directory)
            stack.callback(cluster.kill)
            cluster.start()
            url = cluster.url
        else:
            server = RedisProcess(directory)
            stack.callback(server.kill)
            server.start()
            url = server.url
        backend = stack.enter_context(faulty_http())
        config = write_config(
            directory,
            {"faulty": {"url": backend}, "local": stdio_echo_server()},
            {
                "redis_url": url,
                "redis": {"timeout": 5},  # a loaded machine must not turn a slow reply into a counted Redis error
                "auth": {"clients": CLIENTS},
                "retry": {"attempts": 1},
                # reset_timeout bounds the window in which the six calls after the opening must fail fast: wide
                # enough for a loaded machine; the probe after it is awaited, not timed
                "breaker": {"fail_max": 2, "reset_timeout": 5},
                "servers": {"faulty": {"tools": {"stats": {"cache": False}, "set_mode": {"invalidates": False}}}},
            },
        )
        gateways = [GatewayProcess(config, wait_path=None) for _ in range(3)]  # they start in parallel
        stack.callback(stop_gateways, *gateways)
        for gateway in gateways:
            gateway.wait_ready()
            # every backend up (`/ready` needs one: the HTTP backend is up before the stdio echo)
            gateway.wait_for(
                lambda h: h["redis"]["state"] == "up" and all(b["state"] == "up" for b in h["backends"].values())
            )
        yield gateways
        for gateway in gateways:
            logged = [line for line in gateway.stderr.splitlines() if "mcp_gateway.redis" in line]
            assert health(gateway)["redis"]["errors"] == 0, logged  # no CROSSSLOT or other Redis error


async def test_cached_result_is_shared(replicas: list[GatewayProcess]) -> None:
    client = RoundRobin([g.base for g in replicas])
    try:
        answers = {text(await client.call("faulty_read", {"key": "shared"})) for _ in range(9)}
        assert answers == {"shared#1"}  # nine calls over three replicas, one backend call
        assert (await client.call("faulty_stats"))["structuredContent"]["read"] == 1
        assert [health(g)["cache"]["l2_hits"] for g in replicas] == [0, 1, 1]  # the other two read Redis once
    finally:
        await client.aclose()


async def test_rate_limit_is_global(replicas: list[GatewayProcess]) -> None:
    client = RoundRobin([g.base for g in replicas], token=LIMITED)
    try:
        results = [await client.call("local_echo", {"text": str(i)}) for i in range(9)]
        served = [not r.get("isError") for r in results]
        assert served[:4] == [True] * 4  # the burst of 4, spent on three replicas
        assert sum(served) <= 5  # one token may trickle in (1/min) while the test runs; not 3 x 4
        assert all("Rate limit exceeded for client 'limited'" in text(r) for r in results[5:])
        assert len(set(client.served_by[4:])) == 3  # every replica refused
    finally:
        await client.aclose()


async def test_breaker_opened_through_one_is_open_on_all(replicas: list[GatewayProcess]) -> None:
    first, *others = replicas
    one = RoundRobin([first.base])
    everyone = RoundRobin([g.base for g in replicas])
    try:
        before = (await one.call("faulty_stats"))["structuredContent"]
        for _ in range(2):
            assert (await one.call("faulty_fail"))["isError"]
        assert health(first)["breakers"]["faulty"]["state"] == "open"
        await until(lambda: all(health(g)["breakers"]["faulty"]["state"] == "open" for g in others))
        for _ in range(6):  # two rounds over the three replicas: each fails fast without calling the backend
            result = await everyone.call("faulty_read", {"key": "never-called"})
            assert result["isError"] and "failing fast" in text(result)

        async def closed_again() -> dict[str, Any] | None:  # after reset_timeout one probe closes it
            result = await one.call("faulty_stats")
            return None if result.get("isError") else result["structuredContent"]

        after = await until(closed_again, timeout=60, interval=0.3)
        assert after.get("read", 0) == before.get("read", 0)  # none of the six reads reached the backend
        assert after["fail"] == before.get("fail", 0) + 2
    finally:
        await one.aclose()
        await everyone.aclose()


# ---------------------------------------------------------------------------------------------- a replica dies


def ai_memory_server(data_dir: Path, redis_url: str) -> dict[str, Any]:
    return {
        "command": "python",
        "args": ["-m", "servers.ai_memory"],
        "env": {
            "PYTHONPATH": str(ROOT),
            "MCP_GATEWAY_DATA_DIR": str(data_dir),
            "REDIS_URL": redis_url,
            "AI_MEMORY_EMBEDDER": "hash",
        },
        "clientScopedArguments": {"namespace": {"lookup": {"tool": "get_memory", "record": "memory"}}},
    }


async def test_replica_killed_mid_load_loses_no_acknowledged_write(tmp_path: Path, redis_server: RedisProcess) -> None:
    """Each replica runs its own ai_memory child; all three share one embedded sqlite store (WAL, busy timeout:
    several processes on one host may write it) and Redis. Replica 2 is SIGKILLed while writes flow; every
    write a replica acknowledged is then readable through every surviving replica."""
    data = tmp_path / "data"
    config = write_config(
        tmp_path,
        {"ai_memory": ai_memory_server(data, redis_server.url)},
        # three ai_memory backends start at once: a loaded machine may take longer than the default 30 s
        {"redis_url": redis_server.url, "auth": {"clients": CLIENTS}, "startup_timeout": START_TIMEOUT},
    )
    with ExitStack() as stack:
        gateways = [GatewayProcess(config, wait_path=None) for _ in range(3)]  # they start in parallel
        stack.callback(stop_gateways, *gateways)
        for gateway in gateways:
            gateway.wait_ready()
        client = RoundRobin([g.base for g in gateways])
        acknowledged: dict[str, str] = {}
        try:
            for i in range(60):
                if i == 25:
                    os.kill(gateways[1].proc.pid, signal.SIGKILL)  # no drain, no goodbye
                content = f"fact number {i}"
                result = await client.call("ai_memory_store_memory", {"content": content, "namespace": "load"})
                assert not result.get("isError"), text(result)
                acknowledged[result["structuredContent"]["id"]] = content
            assert gateways[1].proc.wait(timeout=10) == -signal.SIGKILL
            assert gateways[1].base not in client.bases and len(client.bases) == 2
            assert len(acknowledged) == 60
            survivors = [g for g in gateways if g is not gateways[1]]
            for gateway in survivors:
                reader = RoundRobin([gateway.base])
                try:
                    for memory_id, content in acknowledged.items():
                        result = await reader.call("ai_memory_get_memory", {"id": memory_id})
                        assert not result.get("isError"), text(result)
                        assert result["structuredContent"]["content"] == content
                finally:
                    await reader.aclose()
        finally:
            await client.aclose()
