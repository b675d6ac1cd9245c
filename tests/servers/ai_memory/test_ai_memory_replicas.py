"""Several gateway replicas as one memory: real `mcp-gateway serve` processes, each with its own
`ai_memory` child, over one real redis-server and one data dir. A write through one replica is
seen by every replica's get / list / recall (with and without filters) at once, through the
gateway's result cache too; Redis restarted from a snapshot taken before a delete brings
nothing back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from gateway.auth.keys import hash_token
from tests.helpers.procs import ROOT, START_TIMEOUT, GatewayProcess, stop_gateways, write_config
from tests.helpers.redis_proc import RedisProcess

TOKEN = "replica-client-0123456789abcdefghijklmnopqrstuvwxyz"
NS = "team"


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
    }


@pytest.fixture
def gateways(tmp_path: Path, redis_server: RedisProcess) -> Iterator[list[GatewayProcess]]:
    config = write_config(
        tmp_path,
        {"ai_memory": ai_memory_server(tmp_path / "data", redis_server.url)},
        {
            "redis_url": redis_server.url,
            "auth": {"clients": {"team": {"token_sha256": hash_token(TOKEN)}}},
            "startup_timeout": START_TIMEOUT,  # three ai_memory backends start at once: a loaded machine is slow
        },
    )
    with ExitStack() as stack:
        made = [GatewayProcess(config, wait_path=None) for _ in range(3)]  # they start in parallel
        stack.callback(stop_gateways, *made)
        for g in made:
            g.wait_ready()
        yield made


def client(g: GatewayProcess) -> Client:
    return Client(StreamableHttpTransport(g.base + "/mcp", headers={"Authorization": f"Bearer {TOKEN}"}))


async def call(c: Client, tool: str, **args: Any) -> Any:
    res = await c.call_tool("ai_memory_" + tool, args, raise_on_error=False)
    if res.is_error:
        return {"error": res.content[0].text if res.content else "error"}
    return res.structured_content


async def view(c: Client, ids: list[str]) -> dict[str, Any]:
    """What one replica shows: get per id, the whole list, recall with and without a filter."""
    got = {}
    for mid in ids:
        r = await call(c, "get_memory", id=mid)
        got[mid] = None if "error" in r else r["content"]
    listed = {m["id"]: m["content"] for m in (await call(c, "list_memories", namespace=NS, limit=100))["memories"]}
    recall = await call(c, "recall_memory", query="renewal contract acme", namespace=NS, k=10)
    recall_f = await call(
        c, "recall_memory", query="renewal contract acme", namespace=NS, k=10, filters={"team": "sales"}
    )
    return {
        "get": got,
        "list": listed,
        "recall": {h["id"]: h["content"] for h in recall["result"]},
        "recall_filtered": {h["id"]: h["content"] for h in recall_f["result"]},
    }


async def settled(clients: list[Client], ids: list[str], expect: dict[str, str | None]) -> list[dict[str, Any]]:
    """Every replica's view, re-read for up to 1 s (the coherence bound) until it matches `expect`."""
    deadline = time.monotonic() + 1.0
    while True:
        views = [await view(c, ids) for c in clients]
        ok = all(
            v["get"] == expect
            and v["list"] == {k: t for k, t in expect.items() if t is not None}
            and v["recall"] == {k: t for k, t in expect.items() if t is not None}
            for v in views
        )
        if ok or time.monotonic() > deadline:
            return views
        await asyncio.sleep(0.05)


async def test_write_through_one_replica_is_seen_by_all(gateways, redis_server: RedisProcess):
    async with client(gateways[0]) as a, client(gateways[1]) as b, client(gateways[2]) as c:
        clients = [a, b, c]
        stored = await call(
            a,
            "store_memories",
            namespace=NS,
            memories=[
                {"content": "Acme renewal contract is due in March", "metadata": {"team": "sales"}},
                {"content": "Acme renewal contract owner is Dana", "metadata": {"team": "sales"}},
                {"content": "Acme renewal contract needs legal review", "metadata": {"team": "legal"}},
            ],
        )
        ids = stored["ids"]
        texts = dict(zip(ids, ["Acme renewal contract is due in March", "Acme renewal contract owner is Dana",
                               "Acme renewal contract needs legal review"], strict=True))  # fmt: skip
        # every replica reads (and caches: gateway L1 + Redis, ai_memory L1) the first state
        for v in await settled(clients, ids, texts):
            assert v["get"] == texts and v["list"] == texts and v["recall"] == texts
            assert set(v["recall_filtered"]) == {ids[0], ids[1]}
        redis.Redis.from_url(redis_server.url).save()  # the snapshot a restored Redis will come back with

        # delete through A, update through B, store through C
        assert (await call(a, "delete_memory", id=ids[0]))["deleted"] is True
        upd = await call(b, "update_memory", id=ids[1], content="Acme renewal contract owner is now Lee")
        assert upd["content"].endswith("Lee")
        new = await call(c, "store_memory", namespace=NS, content="Acme renewal contract signed early",
                         metadata={"team": "sales"})  # fmt: skip
        expect = {ids[0]: None, ids[1]: "Acme renewal contract owner is now Lee", ids[2]: texts[ids[2]],
                  new["id"]: "Acme renewal contract signed early"}  # fmt: skip
        # the writing replica at once
        assert (await call(a, "get_memory", id=ids[0])).get("error")
        assert (await call(b, "get_memory", id=ids[1]))["content"].endswith("Lee")
        assert (await call(c, "get_memory", id=new["id"]))["content"].endswith("early")
        for v in await settled(clients, list(expect), expect):
            assert v["get"] == expect
            assert v["list"] == {k: t for k, t in expect.items() if t}
            assert v["recall"] == {k: t for k, t in expect.items() if t}
            assert set(v["recall_filtered"]) == {ids[1], new["id"]}

        # Redis comes back from the snapshot taken before the delete: still nothing old is served
        redis_server.kill()
        redis_server.start()
        assert redis.Redis.from_url(redis_server.url).dbsize() > 0  # the old entries really are back
        await asyncio.sleep(2.5)  # past the clients' Redis back-off, so they use the restored data
        for v in [await view(x, list(expect)) for x in clients]:
            assert v["get"] == expect
            assert v["list"] == {k: t for k, t in expect.items() if t}
            assert v["recall"] == {k: t for k, t in expect.items() if t}
            assert set(v["recall_filtered"]) == {ids[1], new["id"]}
