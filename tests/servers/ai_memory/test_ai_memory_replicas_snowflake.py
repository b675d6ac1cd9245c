"""Two and three gateway replicas as one memory over Snowflake: real `mcp-gateway serve` processes,
each running the real `ai_memory` backend as its child with `SNOWFLAKE_*` pointed at one fakesnow
server (Snowflake's wire protocol over DuckDB, in this test process) and `REDIS_URL` at one real
redis-server; real MCP clients over Streamable HTTP. Each replica has its own data dir (its outbox),
as pods do, at the same path written in the same config (`~/<memory>`, `~` the replica's own HOME): the
replicas run one `mcpServers` entry, so the gateway's Redis keys and events for the backend are the same
in each (docs/resilience.md, "Redis keys"); what they share is L3 (one Snowflake schema) and Redis. The
two backends of a replica are two separate memories (a schema each) on that same Redis database.

A store / update / delete through one replica is seen by every replica's `get_memory`,
`list_memories` and `recall_memory` (with and without a metadata filter) within 1 s, and stays
seen: neither the gateway's result cache (read-only tools, each replica's L1 + Redis) nor
ai_memory's own L1 serves the answer from before the write. `AI_MEMORY_SYNC_INTERVAL` is an hour,
so only the Redis change signal can tell a replica about another's write in time.

Two ways to embed: `cortex` (the default on Snowflake: AI_EMBED and VECTOR_COSINE_SIMILARITY run
in fakesnow, backed here by the hash embedder, `fake_cortex.py`) and `local` (the replica embeds
and writes the vector to L3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from embedding.embedder import HashEmbedder
from gateway.auth.keys import hash_token
from tests.helpers.procs import ROOT, START_TIMEOUT, GatewayProcess, wait_http, write_config
from tests.helpers.redis_proc import RedisProcess

from .fake_cortex import cortex_functions

TOKEN = "snowflake-replicas-0123456789abcdefghijklmnopqrstuvwxyz"
QUERY = "renewal contract acme"
BOUND = 1.0  # seconds: the coherence bound of issue 12
EMBEDDERS = ("cortex", "local")  # one ai_memory backend of each kind per replica


def ai_memory_server(data_dir: str, redis_url: str, snowflake: dict[str, Any], schema: str, embedder: str) -> dict:
    env = {
        "PYTHONPATH": str(ROOT),
        "MCP_GATEWAY_DATA_DIR": data_dir,
        "REDIS_URL": redis_url,
        "SNOWFLAKE_ACCOUNT": snowflake.get("account", "fakesnow"),
        "SNOWFLAKE_USER": snowflake.get("user", "fake"),
        "SNOWFLAKE_PASSWORD": snowflake.get("password", "snow"),
        "SNOWFLAKE_HOST": "127.0.0.1",
        "SNOWFLAKE_PORT": str(snowflake["port"]),
        "SNOWFLAKE_PROTOCOL": "http",
        "SNOWFLAKE_DATABASE": "REPLICAS",
        "SNOWFLAKE_SCHEMA": schema,
        "SNOWFLAKE_POOL_SIZE": "2",
        "AI_MEMORY_SYNC_INTERVAL": "3600",  # only the Redis signal can carry a write to the others in time
    }
    if embedder == "cortex":  # the default on Snowflake
        env["AI_MEMORY_CORTEX_DIM"] = str(HashEmbedder().dim)
    else:
        env["AI_MEMORY_EMBEDDER"] = "hash"
    return {"command": "python", "args": ["-m", "servers.ai_memory"], "env": env}


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, fakesnow_kwargs: dict[str, Any]
) -> Iterator[list[GatewayProcess]]:
    """Three replicas, started in parallel, each with both backends (one schema each), over one fakesnow
    server and one redis-server, shared by the module's tests (each test has its own namespace)."""
    directory = tmp_path_factory.mktemp("snowflake-replicas")
    with ExitStack() as stack:
        stack.enter_context(cortex_functions(HashEmbedder(), fakesnow_kwargs))
        redis_server = RedisProcess(directory)
        stack.callback(redis_server.kill)
        redis_server.start()
        gateways: list[GatewayProcess] = []
        stack.callback(stop_all, gateways)
        for n in range(3):
            home = directory / f"replica{n}"
            servers = {  # two separate memories (own schema) on one Redis database: their keys' prefixes differ
                name: ai_memory_server(f"~/{name}", redis_server.url, fakesnow_kwargs, name.upper(), name)
                for name in EMBEDDERS
            }
            home.mkdir()
            auth = {"clients": {"team": {"token_sha256": hash_token(TOKEN)}}}
            # six ai_memory backends start at once against one fakesnow: on a loaded machine one may take longer
            # than the default 30 s `startup_timeout`, and each restart only adds to the load
            settings = {"redis_url": redis_server.url, "auth": auth, "startup_timeout": START_TIMEOUT}
            config = write_config(home, servers, settings)
            gateways.append(GatewayProcess(config, wait_path=None, HOME=str(home)))  # all three start at once
        for gateway in gateways:
            wait_http(gateway.base + "/ready", gateway.proc)
            # both backends in the catalog (the gateway serves at once; backends join as they come up)
            gateway.wait_for(
                lambda h: h["redis"]["state"] == "up" and all(h["backends"][n]["state"] == "up" for n in EMBEDDERS)
            )
        yield gateways


def stop_all(gateways: list[GatewayProcess]) -> None:
    """Stop the replicas together (each `stop` waits for its process)."""
    for gateway in gateways:
        if gateway.proc.poll() is None:
            gateway.proc.terminate()
    for gateway in gateways:
        gateway.stop()


@dataclass
class Replica:
    """One gateway replica as a client sees it, talking to one of its ai_memory backends."""

    gateway: GatewayProcess
    client: Client
    server: str

    async def call(self, tool: str, **args: Any) -> Any:
        result = await self.client.call_tool(f"{self.server}_{tool}", args, raise_on_error=False)
        if result.is_error:
            return {"error": result.content[0].text if result.content else "error"}
        return result.structured_content

    async def view(self, namespace: str, ids: list[str]) -> dict[str, Any]:
        """What it shows: get per id, the list and recall, each without and with a metadata filter."""
        got = {}
        for mid in ids:
            r = await self.call("get_memory", id=mid)
            got[mid] = None if "error" in r else r["content"]
        sales = {"team": "sales"}
        listed = await self.call("list_memories", namespace=namespace, limit=100)
        listed_f = await self.call("list_memories", namespace=namespace, limit=100, filters=sales)
        recall = await self.call("recall_memory", query=QUERY, namespace=namespace, k=10)
        recall_f = await self.call("recall_memory", query=QUERY, namespace=namespace, k=10, filters=sales)
        return {
            "get": got,
            "list": {m["id"]: m["content"] for m in listed["memories"]},
            "list_sales": {m["id"]: m["content"] for m in listed_f["memories"]},
            "recall": {h["id"]: h["content"] for h in recall["result"]},
            "recall_sales": {h["id"]: h["content"] for h in recall_f["result"]},
        }

    def cache_hits(self) -> int:
        """The gateway's result-cache hits so far (its own L1 and Redis)."""
        cache = self.gateway.health()["cache"]
        return int(cache["hits"] + cache["l2_hits"])


def expected(memories: dict[str, tuple[str, str] | None]) -> dict[str, Any]:
    """The view every replica must show, from {id: (content, team) or None when deleted}."""
    live = {mid: m for mid, m in memories.items() if m is not None}
    alive = {mid: content for mid, (content, _) in live.items()}
    sales = {mid: content for mid, (content, team) in live.items() if team == "sales"}
    return {
        "get": {mid: (m[0] if m else None) for mid, m in memories.items()},
        "list": alive,
        "list_sales": sales,
        "recall": alive,
        "recall_sales": sales,
    }


async def settled(replicas: list[Replica], namespace: str, memories: dict[str, tuple[str, str] | None]) -> None:
    """Every replica shows `memories` within BOUND (polled; never a wall-time assertion), then keeps
    showing it: two more rounds, answered (in part) by the gateways' result caches, give the same."""
    want = expected(memories)
    ids = list(memories)
    deadline = time.monotonic() + BOUND
    while True:
        views = [await r.view(namespace, ids) for r in replicas]
        if all(v == want for v in views) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    for n, v in enumerate(views):
        assert v == want, f"replica {n} still shows {v}"
    hits = sum(r.cache_hits() for r in replicas)
    for _ in range(2):
        for n, r in enumerate(replicas):
            assert await r.view(namespace, ids) == want, f"replica {n} served a stale answer later"
    assert sum(r.cache_hits() for r in replicas) > hits  # the result cache was in front of those reads


async def writes_through_one_read_through_all(replicas: list[Replica], namespace: str) -> None:
    """A batch stored through the first; then each replica in turn deletes one memory, updates one
    (content, and team: in or out of the filter) and stores one; after each write round every
    replica reads (the writer at once, the others within BOUND)."""
    batch = [
        ("Acme renewal contract is due in March", "sales"),
        ("Acme renewal contract owner is Dana", "sales"),
        ("Acme renewal contract needs legal review", "legal"),
    ]
    stored = await replicas[0].call(
        "store_memories",
        namespace=namespace,
        memories=[{"content": content, "metadata": {"team": team}} for content, team in batch],
    )
    assert "ids" in stored, stored  # acknowledged, not an error
    memories: dict[str, tuple[str, str] | None] = dict(zip(stored["ids"], batch, strict=True))
    await settled(replicas, namespace, memories)  # every replica reads, and caches, this state
    for n, writer in enumerate(replicas):
        gone, changed, _ = list(memories)[-3:]
        assert (await writer.call("delete_memory", id=gone))["deleted"] is True
        memories[gone] = None
        before = memories[changed]
        team = "legal" if before is not None and before[1] == "sales" else "sales"
        content = f"Acme renewal contract owner is now Lee ({n})"
        updated = await writer.call("update_memory", id=changed, content=content, metadata={"team": team})
        assert updated.get("content") == content, updated
        memories[changed] = (content, team)
        content = f"Acme renewal contract signed early by replica {n}"
        new = await writer.call("store_memory", namespace=namespace, content=content, metadata={"team": "sales"})
        memories[new["id"]] = (content, "sales")
        assert await writer.view(namespace, list(memories)) == expected(memories)  # the writer: at once
        await settled(replicas, namespace, memories)


@pytest.mark.parametrize("server", EMBEDDERS)
@pytest.mark.parametrize("count", [2, 3])
async def test_writes_through_one_replica_are_seen_by_all(
    replicas: list[GatewayProcess], count: int, server: str
) -> None:
    async with AsyncExitStack() as stack:
        clients = []
        for gateway in replicas[:count]:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            c = await stack.enter_async_context(Client(StreamableHttpTransport(gateway.base + "/mcp", headers=headers)))
            clients.append(Replica(gateway, c, server))
        await writes_through_one_read_through_all(clients, f"team{count}")
