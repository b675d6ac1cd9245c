"""Tier behaviour: real Redis L1 (killed mid-run), Snowflake L3 through fakesnow, the outbox,
and SIGKILL durability of a real `python -m servers.ai_memory` process."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import sys
import threading
from pathlib import Path

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from servers.ai_memory.records import MemoryRecord, content_hash
from servers.ai_memory.snowflake_store import SnowflakeStore
from servers.ai_memory.store import StoreUnavailable, delete_op, put_op

from .conftest import free_port, snowflake_settings, start_fakesnow

REPO = Path(__file__).resolve().parents[3]


# -- L1 Redis ------------------------------------------------------------------------------


async def test_redis_l1_hits_and_redis_death_loses_nothing(make_service, redis_server):
    # a killed redis refuses at once; the timeout only bounds a slow answer (2 s: a loaded machine's)
    svc = await make_service(redis_url=redis_server.url, redis_timeout=2.0)
    assert svc.cache.backend == "redis"
    ids = (
        await svc.store_memories(
            [
                {"content": f"fact {i}: the {w} is in drawer {i}"}
                for i, w in enumerate(["stapler", "passport", "charger"])
            ]
        )
    )["ids"]
    first = await svc.recall_memory("where is my passport", k=2, consistency="indexed")
    assert first[0]["id"] == ids[1]
    hits = svc.reads.hits
    assert await svc.recall_memory("where is my passport", k=2) == first
    assert svc.reads.hits == hits + 1
    assert (await svc.get_memory(ids[0]))["content"].startswith("fact 0")

    redis_server.kill()
    # reads and writes keep working without L1, and without client errors
    assert (await svc.recall_memory("where is my passport", k=2))[0]["id"] == ids[1]
    new = await svc.store_memory("the umbrella is behind the door")
    assert (await svc.recall_memory("umbrella", k=1))[0]["id"] == new["id"]
    assert (await svc.get_memory(ids[2]))["content"].startswith("fact 2")
    stats = await svc.memory_stats()
    assert stats["l1"]["available"] is False and stats["l3"]["count"] == 4

    redis_server.start()  # a fresh, empty redis on the same port
    svc.cache._down_until = 0.0  # skip the back-off instead of sleeping through it
    assert (await svc.recall_memory("umbrella", k=1))[0]["id"] == new["id"]
    assert await svc.recall_memory("umbrella", k=1) == await svc.recall_memory("umbrella", k=1)
    assert svc.cache.available
    assert svc.store.count("default") == 4


async def test_redis_signals_missed_while_down_are_replayed(make_service, redis_server):
    svc = await make_service(redis_url=redis_server.url, redis_timeout=0.2)
    await svc.store_memory("alpha project deadline is May 3")
    cached = await svc.recall_memory("alpha project deadline", k=5)
    assert len(cached) == 1
    # simulate a network blip: the cache is unreachable during a write, redis keeps its data
    svc.cache._down_until = float("inf")
    new = await svc.store_memory("alpha project deadline moved to June 9")
    svc.cache._down_until = 0.0
    fresh = await svc.recall_memory("alpha project deadline", k=5)
    assert new["id"] in [h["id"] for h in fresh]


# -- L3 Snowflake via fakesnow ---------------------------------------------------------------


def _rec(i: int, ns: str = "ns", **kw) -> MemoryRecord:
    content = kw.pop("content", f"memory {i}")
    return MemoryRecord(
        id=f"m{i}",
        namespace=ns,
        content=content,
        content_hash=content_hash(content),
        metadata=kw.pop("metadata", {"i": i, "tags": ["a", "b"], "nested": {"x": 1.5}}),
        created_at=1_700_000_000.0 + i,
        updated_at=1_700_000_000.0 + i,
        **kw,
    )


def test_snowflake_store_schema_merge_variant_purge_pool(fakesnow_kwargs):
    store = SnowflakeStore(snowflake_settings(fakesnow_kwargs))
    store.init()
    store.init()  # idempotent DDL
    import numpy as np

    recs = [_rec(i, embedding=np.full(4, i, dtype=np.float32), embedder="t") for i in range(3)]
    recs.append(_rec(9, expires_at=1_700_000_100.0))
    assert store.apply([put_op(r) for r in recs]) == {"ns": (0, 1)}
    assert store.apply([put_op(recs[0])]) == {"ns": (1, 2)}  # replay: MERGE upserts, no duplicate
    assert store.count("ns") == 4
    got, version = store.get("m1")
    assert version == 2 and got.version == 1
    assert got.metadata == {"i": 1, "tags": ["a", "b"], "nested": {"x": 1.5}}
    assert got.embedding.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert got.expires_at is None and got.created_at == pytest.approx(1_700_000_001.0)
    changed = _rec(1, content="memory one, edited", metadata={"i": 10})
    store.apply([put_op(changed)])
    got = store.get("m1")[0]
    assert got.content == "memory one, edited" and got.metadata == {"i": 10}
    assert got.created_at == pytest.approx(1_700_000_001.0)  # MERGE keeps created_at
    assert {r.id for r in store.snapshot("ns", now=1_700_000_050.0).records} == {"m0", "m1", "m2", "m9"}
    assert {r.id for r in store.snapshot("ns", now=1_700_000_200.0).records} == {"m0", "m1", "m2"}
    assert store.purge_expired(now=1_700_000_200.0) == [("m9", "ns")]
    store.apply([delete_op("m0", "ns")])
    assert store.count("ns") == 2 and store.get("m0") == (None, 0)
    # a replica at version 3 catches up: the edit of m1 is older, the purge and the delete are newer
    ch = store.changes("ns", 3)
    assert ch.version == 5 and sorted(ch.deleted) == ["m0", "m9"] and ch.records == []
    assert {r.id for r in store.changes("ns", 2).records} == {"m1"}
    assert store.pool.created <= store.pool.size
    store.close()


async def test_service_on_snowflake_filters_update_dedupe(make_service, fakesnow_kwargs, tmp_path):
    store = SnowflakeStore(snowflake_settings(fakesnow_kwargs))
    svc = await make_service(store=store)
    assert (await svc.memory_stats())["l3"]["backend"] == "snowflake"
    a = await svc.store_memory("Customer Acme renews in March", metadata={"tier": "gold", "arr": 120000})
    b = await svc.store_memory("Customer Globex churned last year", metadata={"tier": "silver", "arr": 5000})
    assert (await svc.store_memory("Customer Acme renews in March"))["deduplicated"] is True
    hits = await svc.recall_memory(
        "when does Acme renew", k=2, filters={"arr": {"$gte": 100000}}, consistency="indexed"
    )
    assert [h["id"] for h in hits] == [a["id"]]
    await svc.update_memory(b["id"], content="Customer Globex came back in June")
    assert store.get(b["id"])[0].content == "Customer Globex came back in June"
    # a second service over the same Snowflake schema (fresh process, empty L1/L2) sees it all
    svc2 = await make_service(tmp_path / "other", store=SnowflakeStore(store.settings))
    hits = await svc2.recall_memory("Globex returned", k=1, consistency="indexed")
    assert hits[0]["id"] == b["id"]
    assert store.count(None) == 2


async def test_outbox_holds_writes_while_snowflake_is_down_and_drains_in_order(make_service, tmp_path):
    port = free_port()
    settings = snowflake_settings({"port": port}, login_timeout=1, network_timeout=1)
    store = SnowflakeStore(settings, retries=1)
    svc = await make_service(store=store)
    assert (await svc.memory_stats())["l3"]["available"] is False
    kept = await svc.store_memory("written while snowflake was down")
    gone = await svc.store_memory("this one is deleted before the store returns")
    batch = await svc.store_memories([{"content": f"bulk {i}"} for i in range(5)])
    await svc.delete_memory(gone["id"])
    assert (await svc.store_memory("written while snowflake was down"))["deduplicated"] is True
    kinds = [op["op"] for _, op in svc.outbox.peek(1000)]
    assert kinds.count("put") == 7 and kinds.count("delete") == 1  # one row per op (+ vectors, "embed")
    # reads work from the index while L3 is away
    assert (await svc.recall_memory("snowflake down", k=1))[0]["id"] == kept["id"]
    stats = (await svc.memory_stats())["l3"]
    assert stats["reachable"] is False and stats["outbox_pending"] >= 8 and stats["outbox_oldest_age_s"] >= 0

    with start_fakesnow(port=port):
        store.breaker.close()
        applied = await svc.drain_outbox()
        assert applied >= 8 and len(svc.outbox) == 0
        assert store.count(None) == 6
        assert store.get(gone["id"])[0] is None
        assert store.get(kept["id"])[0].content == "written while snowflake was down"
        assert await svc.drain_outbox() == 0  # nothing replayed twice
        assert store.count(None) == 6
        # new writes go straight to L3 again
        await svc.store_memory("after recovery")
        assert len(svc.outbox) == 0 and store.count(None) == 7
        assert set(batch["ids"]) <= {r.id for r in store.snapshot("default", now=0).records}
        store.close()


class RefusingDDL:
    """fakesnow's app behind a switch: while `refusing`, a `CREATE TABLE` is answered with the error
    Snowflake gives a role without the privilege (003001, SQL access control error), as a real account
    does until someone grants it; everything else, and everything once switched off, reaches fakesnow."""

    def __init__(self) -> None:
        self.refusing = True
        self.refused = 0

    async def __call__(self, scope: dict, receive, send) -> None:
        import fakesnow.server

        app = fakesnow.server.app
        if scope["type"] != "http" or not scope["path"].startswith("/queries/v1/query-request"):
            return await app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        gzipped = (b"content-encoding", b"gzip") in [(k.lower(), v) for k, v in scope["headers"]]
        sql = json.loads(gzip.decompress(raw) if gzipped else raw)["sqlText"]
        if self.refusing and sql.lstrip().upper().startswith("CREATE TABLE"):
            self.refused += 1
            body = json.dumps(
                {
                    "data": {"errorCode": "003001", "sqlState": "42501"},
                    "code": "003001",
                    "message": "SQL access control error: Insufficient privileges to operate on schema",
                    "success": False,
                }
            ).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            return await send({"type": "http.response.body", "body": body})

        async def replay() -> dict:
            return {"type": "http.request", "body": raw, "more_body": False}

        return await app(scope, replay, send)


async def test_a_refused_set_up_serves_from_the_outbox_and_is_tried_again(make_service):
    """Snowflake answers but refuses the set-up (a role without CREATE TABLE: 003001, after init's retries).
    The service still starts (before, `start` raised and the gateway restarted the server in a loop, its
    tools gone), acknowledges writes into the outbox and serves them, and once the privilege is granted its
    next drain sets the store up and applies them."""
    import uvicorn

    gate = RefusingDDL()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(gate, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            await anyio.sleep(0.05)
        store = SnowflakeStore(snowflake_settings({"port": port}), retries=1)
        svc = await make_service(store=store)  # raised StoreRejected before
        assert gate.refused >= 3  # init tried again, then gave up for now
        assert (await svc.memory_stats())["l3"]["available"] is False
        kept = await svc.store_memory("acknowledged while the set-up was refused")
        assert len(svc.outbox) >= 1
        assert (await svc.get_memory(kept["id"]))["content"] == "acknowledged while the set-up was refused"

        gate.refusing = False  # the privilege granted
        while len(svc.outbox):  # this drain, or the background drainer's, sets the store up and applies it
            await svc.drain_outbox()
            await anyio.sleep(0.05)
        assert store.get(kept["id"])[0].content == "acknowledged while the set-up was refused"
        store.close()
    finally:
        server.should_exit = True
        thread.join()


async def test_outbox_survives_restart_before_drain(make_service, tmp_path):
    port = free_port()
    settings = snowflake_settings({"port": port}, login_timeout=1, network_timeout=1)
    svc = await make_service(tmp_path / "d", store=SnowflakeStore(settings, retries=1))
    m = await svc.store_memory("acknowledged but only in the outbox")
    await svc.close()
    svc2 = await make_service(tmp_path / "d", store=SnowflakeStore(settings, retries=1))
    assert len(svc2.outbox) == 1
    assert (await svc2.recall_memory("only in the outbox", k=1))[0]["id"] == m["id"]
    assert (await svc2.get_memory(m["id"]))["content"] == "acknowledged but only in the outbox"


def test_unreachable_snowflake_raises_store_unavailable_and_opens_breaker():
    settings = snowflake_settings({"port": free_port()}, login_timeout=1, network_timeout=1)
    store = SnowflakeStore(settings, retries=1)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            store.count(None)
    assert store.breaker.current_state == "open"
    with pytest.raises(StoreUnavailable, match="circuit open"):
        store.count(None)


# -- SIGKILL durability ------------------------------------------------------------------------


def _server_pids(data_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"servers.ai_memory" in cmd and f"MCP_GATEWAY_DATA_DIR={data_dir}".encode() in env:
            pids.append(int(entry.name))
    return pids


def _transport(data_dir: Path) -> StdioTransport:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "SNOWFLAKE_"))}
    env["MCP_GATEWAY_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(REPO)
    return StdioTransport(
        command=sys.executable, args=["-m", "servers.ai_memory"], env=env, cwd=str(REPO), keep_alive=False
    )


async def test_sigkill_right_after_ack_loses_nothing(tmp_path):
    data_dir = tmp_path / "data"
    client = Client(_transport(data_dir))
    with contextlib.suppress(Exception):
        async with client:
            res = await client.call_tool(
                "store_memory",
                {"content": "the spare key is under the blue pot", "metadata": {"where": "garden"}},
            )
            mid = res.structured_content["id"]
            pids = _server_pids(data_dir)
            assert len(pids) == 1
            os.kill(pids[0], signal.SIGKILL)
    assert not [
        p
        for p in _server_pids(data_dir)
        if Path(f"/proc/{p}").exists() and b"zombie" not in Path(f"/proc/{p}/status").read_bytes().lower()
    ]
    async with Client(_transport(data_dir)) as client2:
        res = await client2.call_tool("recall_memory", {"query": "where is the spare key?", "k": 1})
        hits = res.structured_content["result"]
        assert hits[0]["id"] == mid and hits[0]["metadata"] == {"where": "garden"}
