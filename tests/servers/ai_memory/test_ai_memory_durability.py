"""Acknowledged writes under failure: an outbox entry L3 refuses for good is dead-lettered without
holding up the writes behind it; a process SIGKILLed while embedding in the background loses
nothing and embeds everything after restart; recall consistency="indexed" right after a big import."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from embedding.embedder import HashEmbedder

REPO = Path(__file__).resolve().parents[3]


async def test_rejected_write_is_dead_lettered_and_later_writes_reach_l3(make_service, tmp_path):
    svc = await make_service(background=False, sqlite_busy_timeout=0.05)
    db = tmp_path / "data" / "ai_memory.sqlite3"
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # L3 cannot take writes: they are acknowledged into the outbox
    bad = await svc.store_memory("poison pill that the store will refuse")
    good = (await svc.store_memories([{"content": f"good memory number {i}"} for i in range(100)]))["ids"]
    stats = await svc.memory_stats()
    assert stats["l3"]["outbox_pending"] == 101 and stats["l3"]["outbox_oldest_age_s"] is not None
    # the store comes back, now refusing the poison for good (a constraint, as a real schema change would)
    blocker.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON MEMORIES WHEN NEW.CONTENT LIKE 'poison%'"
        " BEGIN SELECT RAISE(ABORT, 'content refused by policy'); END"
    )
    blocker.execute("COMMIT")
    assert await svc.drain_outbox() == 100
    assert svc.store.count(None) == 100
    assert all(svc.store.get(i)[0] is not None for i in good)
    stats = await svc.memory_stats()
    assert stats["l3"]["outbox_pending"] == 0 and stats["l3"]["dead_letters"] == 1
    assert stats["l3"]["reachable"] is True
    [dead] = stats["l3"]["dead_letter_samples"]
    assert dead["id"] == bad["id"] and "refused by policy" in dead["reason"]
    # later writes go straight to L3 again
    await svc.store_memory("written after the replay")
    assert svc.store.count(None) == 101
    # the operator fixes the cause and replays the dead letter
    blocker.execute("DROP TRIGGER refuse")
    out = await svc.dead_letters("replay")
    assert out["affected"] == 1 and out["dead_letters"] == []
    await svc.drain_outbox()
    assert svc.store.get(bad["id"])[0].content.startswith("poison")
    assert (await svc.dead_letters("discard"))["affected"] == 0
    blocker.close()


async def test_indexed_recall_right_after_a_5000_memory_import(make_service):
    svc = await make_service(embedder=HashEmbedder(), embed_batch=500)
    ids = (await svc.store_memories([{"content": f"ledger entry {i} for vendor v{i % 50}"} for i in range(5000)]))[
        "ids"
    ]
    assert (await svc.memory_stats())["l2"]["index_lag"]["pending"] > 0  # acknowledged before embedding
    hits = await svc.recall_memory("ledger entry 4321 for vendor v21", k=3, consistency="indexed")
    assert hits[0]["id"] == ids[4321]
    idx = await svc.live.current("default")
    assert all(idx.vector(i) is not None for i in ids)  # everything stored before the call is embedded
    assert (await svc.memory_stats())["l2"]["index_lag"]["pending"] == 0


async def test_a_backlog_bigger_than_a_page_is_embedded_after_restart(make_service, tmp_path):
    """Rows L3 holds without a vector (a process killed before its indexer got to them) are adopted
    page after page at start, not one page per orphan_interval: indexed recall does not wait an hour."""
    data = tmp_path / "backlog"
    texts = [f"supplier invoice {i} for the warehouse in zone z{i % 9}" for i in range(150)]
    first = await make_service(data, embedder=HashEmbedder(), background=False)
    ids = (await first.store_memories([{"content": t} for t in texts], "inv"))["ids"]
    await first.close()  # acknowledged, never embedded (no indexer ran)
    svc = await make_service(data, embedder=HashEmbedder(), embed_batch=4, orphan_interval=3600)  # pages of 32
    out = await svc.recall("supplier invoice 77 for the warehouse", "inv", k=3, consistency="indexed")
    assert out.notes == [] and out.hits[0]["id"] == ids[77]
    assert svc.store.unembedded(svc.embedder.name, 1e12, 1000) == []


def _transport(data_dir: Path) -> StdioTransport:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "SNOWFLAKE_"))}
    env.update(
        MCP_GATEWAY_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), AI_MEMORY_EMBED_BATCH="16",
        AI_MEMORY_INDEXED_TIMEOUT="300",  # a loaded 2-core machine embeds slowly; the wait is bounded, not timed
    )  # fmt: skip
    return StdioTransport(command=sys.executable, args=["-m", "servers.ai_memory"], env=env, cwd=str(REPO))


async def test_sigkill_during_background_embedding_loses_nothing(tmp_path):
    """200 memories acknowledged at once, embedded behind the ack in batches of 16 by the real
    model; the process is SIGKILLed once some batches are in and others are not."""
    data = tmp_path / "data"
    memories = [{"content": f"meeting note {i}: the launch moved to week {i % 52}"} for i in range(200)]
    client = Client(_transport(data))
    await client.__aenter__()
    try:
        pid = _pid(data)
        res = await client.call_tool("store_memories", {"memories": memories, "namespace": "notes"})
        ids = res.structured_content["ids"]
        deadline = time.monotonic() + 120  # a wait for the indexer to be part-way through, not a timing
        while True:
            lag = (await client.call_tool("memory_stats", {})).structured_content["l2"]["index_lag"]
            if lag["embedded"] > 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(Exception):  # its server is gone
            await client.__aexit__(None, None, None)
    assert 0 < lag["embedded"] < len(memories) and lag["pending"] > 0
    db = sqlite3.connect(data / "ai_memory.sqlite3")
    total, unembedded = db.execute("SELECT COUNT(*), SUM(EMBEDDING IS NULL) FROM MEMORIES").fetchone()
    assert total == len(memories) and 0 < unembedded < len(memories)  # acknowledged, part embedded
    async with Client(_transport(data)) as again:
        res = await again.call_tool(
            "recall_memory", {"query": "meeting note 177", "namespace": "notes", "k": 5, "consistency": "indexed"}
        )
        assert ids[177] in [h["id"] for h in res.structured_content["result"]]
        assert len(res.content) == 1  # no note: the wait for the index ended with everything embedded
    total, unembedded = db.execute("SELECT COUNT(*), SUM(EMBEDDING IS NULL) FROM MEMORIES").fetchone()
    assert total == len(memories) and unembedded == 0


def _pid(data_dir: Path) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                env = (entry / "environ").read_bytes()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"servers.ai_memory" in cmd and f"MCP_GATEWAY_DATA_DIR={data_dir}".encode() in env:
                return int(entry.name)
    raise AssertionError("server process not found")


async def test_a_namespaces_stats_count_only_its_own_outbox_and_dead_letters(make_service, tmp_path):
    svc = await make_service(background=False, sqlite_busy_timeout=0.05)
    blocker = sqlite3.connect(tmp_path / "data" / "ai_memory.sqlite3", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # L3 cannot take writes: both tenants' writes wait in the outbox
    await svc.store_memories([{"content": f"tenant a memory {i}"} for i in range(3)], namespace="a")
    poison = await svc.store_memory("poison pill of tenant b", namespace="b")
    assert (await svc.memory_stats("a"))["l3"]["outbox_pending"] == 3
    assert (await svc.memory_stats("b"))["l3"]["outbox_pending"] == 1
    assert (await svc.memory_stats())["l3"]["outbox_pending"] == 4
    blocker.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON MEMORIES WHEN NEW.CONTENT LIKE 'poison%'"
        " BEGIN SELECT RAISE(ABORT, 'content refused by policy'); END"
    )
    blocker.execute("COMMIT")
    await svc.drain_outbox()
    a, b = (await svc.memory_stats("a"))["l3"], (await svc.memory_stats("b"))["l3"]
    assert a["dead_letters"] == 0 and a["dead_letter_samples"] == [] and a["outbox_oldest_age_s"] is None
    assert b["dead_letters"] == 1 and [d["id"] for d in b["dead_letter_samples"]] == [poison["id"]]
    blocker.close()


async def test_dead_letters_of_one_namespace_leave_the_others_alone(make_service, tmp_path):
    """With `namespace`, `memory_dead_letters` lists, replays and discards that namespace's dead letters
    only: another tenant's seqs named outright are left alone, as if absent."""
    svc = await make_service(background=False, sqlite_busy_timeout=0.05)
    blocker = sqlite3.connect(tmp_path / "data" / "ai_memory.sqlite3", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    poison_a = await svc.store_memory("poison pill of tenant a", namespace="a")
    poison_b = await svc.store_memory("poison pill of tenant b", namespace="b")
    blocker.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON MEMORIES WHEN NEW.CONTENT LIKE 'poison%'"
        " BEGIN SELECT RAISE(ABORT, 'content refused by policy'); END"
    )
    blocker.execute("COMMIT")
    await svc.drain_outbox()
    every = await svc.dead_letters("list")
    assert {d["id"] for d in every["dead_letters"]} == {poison_a["id"], poison_b["id"]}
    [seq_b] = [d["seq"] for d in every["dead_letters"] if d["id"] == poison_b["id"]]
    listed = await svc.dead_letters("list", namespace="a")
    assert listed["namespace"] == "a" and [d["id"] for d in listed["dead_letters"]] == [poison_a["id"]]
    assert (await svc.dead_letters("discard", [seq_b], namespace="a"))["affected"] == 0  # b's, named from a
    assert (await svc.dead_letters("replay", namespace="a"))["affected"] == 1
    assert [d["id"] for d in (await svc.dead_letters("list"))["dead_letters"]] == [poison_b["id"]]
    assert (await svc.dead_letters("discard", namespace="b"))["affected"] == 1
    assert (await svc.dead_letters("list"))["dead_letters"] == []
    blocker.close()
