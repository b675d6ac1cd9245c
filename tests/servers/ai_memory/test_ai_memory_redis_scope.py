"""Separate memories on one Redis database stay separate; replicas of one memory stay one.

Every Redis key ai_memory uses starts with a prefix naming the L3 store it caches (a hash of the
sqlite file's resolved path, or of Snowflake account/database/schema/table; AI_MEMORY_REDIS_PREFIX
names it instead). Two stores behind one Redis db: nothing stored in one is returned by the other's
get / list / recall, from its cache or not, and a write in one leaves the other's cached entries
and change signal alone. Two replicas over one store: the same prefix, so a record or recall one
cached is a hit for the other, and (Snowflake, sync an hour away) a write through one reaches the
other through the shared signal at once. Real redis-server; real `python -m servers.ai_memory`
processes over stdio for sqlite; services over one fakesnow server for Snowflake."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from embedding.embedder import HashEmbedder
from gateway.auth.keys import hash_token
from servers.ai_memory.cache import redis_prefix
from servers.ai_memory.coherence import version_key
from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.snowflake_store import SnowflakeStore, store_identity
from servers.ai_memory.sqlite_store import SqliteStore
from tests.helpers.procs import ROOT, GatewayProcess, write_config
from tests.helpers.redis_proc import RedisProcess

from .conftest import snowflake_settings


class Memory:
    """One `python -m servers.ai_memory` process as an MCP client sees it."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, **args: Any) -> Any:
        result = await self.client.call_tool(tool, args, raise_on_error=False)
        return {"error": result.content[0].text} if result.is_error else result.structured_content

    async def get(self, memory_id: str) -> Any:
        r = await self.call("get_memory", id=memory_id)
        return None if "error" in r else (r["content"], r["metadata"])

    async def listed(self, namespace: str) -> set[str]:
        return {m["content"] for m in (await self.call("list_memories", namespace=namespace))["memories"]}

    async def recalled(self, query: str, namespace: str) -> set[str]:
        return {h["content"] for h in (await self.call("recall_memory", query=query, namespace=namespace))["result"]}

    async def l1_hits(self) -> int:
        return int((await self.call("memory_stats"))["l1"]["hits"])


@asynccontextmanager
async def memory_process(data_dir: Path, redis_url: str, **env: str) -> AsyncIterator[Memory]:
    transport = StdioTransport(
        sys.executable,
        ["-m", "servers.ai_memory"],
        env={
            "PYTHONPATH": str(ROOT),
            "MCP_GATEWAY_DATA_DIR": str(data_dir),
            "REDIS_URL": redis_url,
            "AI_MEMORY_EMBEDDER": "hash",
            **env,
        },
        cwd=str(ROOT),
        keep_alive=False,
    )
    async with Client(transport) as client:
        yield Memory(client)


async def test_two_sqlite_memories_on_one_redis_db_never_share_and_replicas_do(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    async with AsyncExitStack() as stack:
        a, b, a2 = [
            await stack.enter_async_context(memory_process(tmp_path / name, redis_server.url))
            for name in ("a", "b", "a")  # a2: a replica of a, on its data dir
        ]
        # each memory's namespace "team" is at version 1: equal versions, so only the key's prefix tells them apart
        id_a = (await a.call("store_memory", namespace="team", content="Acme renewal is due in March"))["id"]
        id_b = (await b.call("store_memory", namespace="team", content="Globex renewal was cancelled"))["id"]
        assert id_a != id_b
        for _ in range(2):  # a reads (and caches) what it has; the second round is served from its cache
            assert await a.get(id_a) == ("Acme renewal is due in March", {})
            assert await a.recalled("renewal", "team") == {"Acme renewal is due in March"}
            assert await a.listed("team") == {"Acme renewal is due in March"}
        hits = await b.l1_hits()
        for _ in range(2):  # b never shows a's memory, from the cache or not
            assert await b.get(id_a) is None
            assert await b.recalled("renewal", "team") == {"Globex renewal was cancelled"}
            assert await b.listed("team") == {"Globex renewal was cancelled"}
        assert await b.l1_hits() == hits + 1  # its own recall, the second time; nothing of a's

        # the replica shares a's keys: what a cached is a hit there
        hits = await a2.l1_hits()
        assert await a2.get(id_a) == ("Acme renewal is due in March", {})
        assert await a2.recalled("renewal", "team") == {"Acme renewal is due in March"}
        assert await a2.l1_hits() == hits + 2

        # the same content in the same namespace has the same id in both memories: a write in one
        # leaves the other's cached record alone
        same = [
            (await m.call("store_memory", namespace="shared", content="The office moves in May", metadata={"by": by}))
            for m, by in ((a, "a"), (b, "b"))
        ]
        shared_id = same[0]["id"]
        assert same[1]["id"] == shared_id
        assert await a.get(shared_id) == ("The office moves in May", {"by": "a"})
        assert await b.get(shared_id) == ("The office moves in May", {"by": "b"})
        hits = await b.l1_hits()
        assert await b.get(shared_id) == ("The office moves in May", {"by": "b"})
        assert await b.l1_hits() == hits + 1  # cached in b
        assert (await a.call("delete_memory", id=shared_id))["deleted"] is True
        assert await a.get(shared_id) is None and await a2.get(shared_id) is None
        assert await b.get(shared_id) == ("The office moves in May", {"by": "b"})
        assert await b.l1_hits() == hits + 2  # a's delete did not drop b's cached copy

    prefixes = {redis_prefix(SqliteStore(tmp_path / name / "ai_memory.sqlite3").identity) for name in ("a", "b")}
    assert len(prefixes) == 2
    keys = redis.Redis.from_url(redis_server.url, decode_responses=True).keys("*")
    assert keys and all(k.split(":")[0] + ":" + k.split(":")[1] in prefixes for k in keys), keys


async def test_snowflake_memories_on_one_redis_db_keep_their_own_signals(
    make_service, fakesnow_kwargs, tmp_path: Path, redis_server: RedisProcess
) -> None:
    """Two schemas, one Redis db; the replica of the first learns of its writes only from the signal."""
    first, second = snowflake_settings(fakesnow_kwargs), snowflake_settings(fakesnow_kwargs)
    # nothing embeds in the background: a version moves only with the writes below
    kw = {"redis_url": redis_server.url, "sync_interval": 3600.0, "embedder": HashEmbedder(), "background": False}
    a = await make_service(tmp_path / "a", store=SnowflakeStore(first), **kw)
    a2 = await make_service(tmp_path / "a2", store=SnowflakeStore(first), **kw)  # a replica of a
    b = await make_service(tmp_path / "b", store=SnowflakeStore(second), **kw)

    # equal namespace, version and query: b's recall is b's own
    await a.store_memory("Acme renewal is due in March", namespace="q")
    theirs = await b.store_memory("Globex renewal was cancelled", namespace="q")
    assert len(await a.recall_memory("renewal", namespace="q")) == 1
    for _ in range(2):
        assert [h["id"] for h in await b.recall_memory("renewal", namespace="q")] == [theirs["id"]]

    mine = await b.store_memory("Globex renewal was cancelled", namespace="team")
    assert [m["id"] for m in (await a2.list_memories("team"))["memories"]] == []  # a2 loads "team" (empty)
    for n in range(3):
        stored = await a.store_memory(f"Acme renewal note {n}", namespace="team")
        listed = [m["id"] for m in (await a2.list_memories("team"))["memories"]]
        assert stored["id"] in listed  # at once, though a2 asks L3 only hourly: the shared signal told it
    assert await a.cache.get_int(version_key("team")) == a.live.indexes["team"].version == 3
    assert await b.cache.get_int(version_key("team")) == b.live.indexes["team"].version == 1  # a's left it alone
    assert [m["id"] for m in (await b.list_memories("team"))["memories"]] == [mine["id"]]
    assert [h["id"] for h in await b.recall_memory("Acme renewal", namespace="team")] == [mine["id"]]
    assert a.cache.prefix == a2.cache.prefix != b.cache.prefix  # type: ignore[union-attr]


async def test_an_operator_named_prefix_is_used_for_every_key(make_service, redis_server: RedisProcess) -> None:
    svc = await make_service(
        redis_url=redis_server.url, redis_prefix="team-a", embedder=HashEmbedder(), background=False
    )
    stored = await svc.store_memory("Acme renewal is due in March")
    await svc.get_memory(stored["id"])
    await svc.recall_memory("renewal")
    keys = redis.Redis.from_url(redis_server.url, decode_responses=True).keys("*")
    assert {k.split(":")[1] for k in keys} == {"rec", "q", "ver"} and all(k.startswith("team-a:") for k in keys), keys


def test_the_prefix_names_the_store_not_the_way_to_reach_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    spellings = [tmp_path / "data", Path("data"), tmp_path / "link", tmp_path / "x" / ".." / "data"]
    assert len({redis_prefix(SqliteStore(p / "f.sqlite3").identity) for p in spellings}) == 1
    assert redis_prefix(SqliteStore(tmp_path / "other" / "f.sqlite3").identity) != redis_prefix(
        SqliteStore(tmp_path / "data" / "f.sqlite3").identity
    )

    base = {"account": "ACME-prod", "port": 1}
    same = [
        snowflake_settings(base, database="MEMDB", schema="TEAM_A"),
        snowflake_settings(base, database="memdb", schema="team_a", host="acme-prod.privatelink.example"),
        snowflake_settings({**base, "account": "acme-prod"}, database="MEMDB", schema="TEAM_A"),
    ]
    assert len({redis_prefix(store_identity(s)) for s in same}) == 1
    others = [
        snowflake_settings(base, database="MEMDB", schema="TEAM_B"),
        snowflake_settings(base, database="OTHER", schema="TEAM_A"),
        snowflake_settings({**base, "account": "acme-dev"}, database="MEMDB", schema="TEAM_A"),
        snowflake_settings(base, database="MEMDB", schema='"team_a"'),  # quoted: a different schema
    ]
    assert len({redis_prefix(store_identity(s)) for s in same[:1] + others}) == 5

    assert redis_prefix("sqlite:/x", "team-a") == "team-a"
    assert MemoryConfig.from_env({"AI_MEMORY_REDIS_PREFIX": " team-a "}).redis_prefix == "team-a"
    assert MemoryConfig.from_env({}).redis_prefix is None


TOKEN = "redis-scope-client-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize("own_prefix", [False, True])
async def test_two_gateways_with_different_memories_on_one_redis(
    tmp_path: Path, redis_server: RedisProcess, own_prefix: bool
) -> None:
    """Two deployments, one Redis, each an `ai_memory` server of its own (own data dir), same client name,
    with the default `gateway.redis.prefix` or one each. ai_memory keeps them apart, and so does the
    gateway's result cache: its Redis keys name the backend (entry digest), not the server name alone."""
    auth = {"clients": {"team": {"token_sha256": hash_token(TOKEN)}}}
    with ExitStack() as stack:
        gateways = []
        for name in ("blue", "green"):
            (tmp_path / name).mkdir()
            server = {
                "command": sys.executable,
                "args": ["-m", "servers.ai_memory"],
                "env": {
                    "PYTHONPATH": str(ROOT),
                    "MCP_GATEWAY_DATA_DIR": str(tmp_path / name / "data"),
                    "REDIS_URL": redis_server.url,
                    "AI_MEMORY_EMBEDDER": "hash",
                },
            }
            settings: dict[str, Any] = {"redis_url": redis_server.url, "auth": auth}
            if own_prefix:
                settings["redis"] = {"prefix": name}
            config = write_config(tmp_path / name, {"ai_memory": server}, settings)
            gateway = GatewayProcess(config)
            stack.callback(gateway.stop)
            gateways.append(gateway)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with AsyncExitStack() as clients:
            blue, green = [
                Memory(
                    await clients.enter_async_context(Client(StreamableHttpTransport(g.base + "/mcp", headers=headers)))
                )
                for g in gateways
            ]
            await blue.call("ai_memory_store_memory", namespace="team", content="Acme renewal is due in March")
            await green.call("ai_memory_store_memory", namespace="team", content="Globex renewal was cancelled")
            query = {"query": "renewal", "namespace": "team"}
            assert [h["content"] for h in (await blue.call("ai_memory_recall_memory", **query))["result"]] == [
                "Acme renewal is due in March"
            ]
            # green's gateway misses its L1; blue's entry is under another Redis key (another backend)
            assert [h["content"] for h in (await green.call("ai_memory_recall_memory", **query))["result"]] == [
                "Globex renewal was cancelled"
            ]
