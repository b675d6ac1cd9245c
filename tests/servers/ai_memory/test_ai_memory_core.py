"""Behaviour of the memory service over the embedded defaults (sqlite L3, local LRU L1, real model)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from servers.ai_memory.server import create_server
from servers.ai_memory.service import MemoryService

FACTS = [
    ("My dog is a golden retriever called Biscuit.", {"topic": "pets", "priority": 1}),
    ("The quarterly board meeting moved to Thursday at 3pm.", {"topic": "work", "priority": 3}),
    ("I am allergic to peanuts and shellfish.", {"topic": "health", "priority": 5}),
    ("Order ORD-48213 was shipped to Lisbon by DHL.", {"topic": "orders", "priority": 2}),
    ("Our Wi-Fi password at the cabin is maplesyrup42.", {"topic": "home", "priority": 1}),
]


async def _seed(svc: MemoryService, namespace: str = "default") -> list[str]:
    out = await svc.store_memories([{"content": c, "metadata": m} for c, m in FACTS], namespace)
    return out["ids"]


async def test_tools_have_annotations_and_output_schemas(tmp_path, monkeypatch):
    monkeypatch.setenv("MCP_GATEWAY_DATA_DIR", str(tmp_path))
    server = create_server()
    async with Client(server) as client:
        tools = {t.name: t for t in await client.list_tools()}
    assert set(tools) == {
        "store_memory",
        "store_memories",
        "recall_memory",
        "get_memory",
        "list_memories",
        "update_memory",
        "delete_memory",
        "delete_namespace",
        "memory_stats",
        "memory_dead_letters",
        "ingest_source",  # servers/ai_memory/sources (issue 13)
        "list_sources",
    }
    for name in ("recall_memory", "get_memory", "list_memories", "memory_stats"):
        assert tools[name].annotations.read_only_hint is True, name
    for name in ("store_memory", "store_memories", "update_memory", "delete_memory", "delete_namespace"):
        assert tools[name].annotations.read_only_hint is False, name
    assert tools["store_memory"].annotations.idempotent_hint is True
    assert all(t.output_schema for t in tools.values())


async def test_recall_ranks_paraphrase_with_real_model(make_service):
    svc = await make_service()
    ids = await _seed(svc)
    hits = await svc.recall_memory("what is the name of my pet?", k=3, consistency="indexed")
    assert hits[0]["id"] == ids[0]
    hits = await svc.recall_memory("which foods can't I eat", k=3)
    assert hits[0]["id"] == ids[2]
    # rare tokens are found through the keyword side
    hits = await svc.recall_memory("ORD-48213", k=1)
    assert hits[0]["id"] == ids[3]
    assert hits[0]["score"] > 0
    assert set(hits[0]) == {"id", "content", "score", "metadata", "created_at"}


async def test_store_twice_returns_first_id(make_service):
    svc = await make_service()
    first = await svc.store_memory("Remember the milk", metadata={"v": 1})
    again = await svc.store_memory("Remember the milk", metadata={"v": 2})
    assert first["deduplicated"] is False
    assert again == {**first, "deduplicated": True}
    batch = await svc.store_memories(
        [{"content": "a new one"}, {"content": "Remember the milk"}, {"content": "a new one"}]
    )
    assert batch["ids"][1] == first["id"]
    assert batch["ids"][0] == batch["ids"][2]
    assert batch["stored"] == 1 and batch["deduplicated"] == 2
    assert svc.store.count("default") == 2
    # the same content in another namespace is a different memory
    other = await svc.store_memory("Remember the milk", namespace="other")
    assert other["id"] != first["id"] and other["deduplicated"] is False


async def test_namespaces_are_isolated(make_service):
    svc = await make_service()
    a = await svc.store_memory("The launch code is blue falcon", namespace="alice")
    await svc.store_memory("Bob likes green tea", namespace="bob")
    hits = await svc.recall_memory("launch code", namespace="bob", k=5)
    assert a["id"] not in [h["id"] for h in hits]
    assert (
        [h["content"] for h in hits] == ["Bob likes green tea"]
        or hits == []
        or all(h["content"] == "Bob likes green tea" for h in hits)
    )
    page = await svc.list_memories("alice")
    assert [m["id"] for m in page["memories"]] == [a["id"]]
    deleted = await svc.delete_namespace("alice")
    assert deleted["deleted"] == 1
    assert (await svc.list_memories("alice"))["memories"] == []
    assert len((await svc.list_memories("bob"))["memories"]) == 1


@pytest.mark.parametrize(
    ("filters", "expected_topics"),
    [
        ({"topic": "pets"}, {"pets"}),
        ({"topic": {"$in": ["pets", "home"]}}, {"pets", "home"}),
        ({"priority": {"$gte": 3}}, {"work", "health"}),
        ({"priority": {"$gt": 1, "$lt": 5}}, {"work", "orders"}),
        ({"$or": [{"topic": "pets"}, {"priority": 5}]}, {"pets", "health"}),
        ({"$and": [{"priority": {"$lte": 2}}, {"$not": {"topic": "home"}}]}, {"pets", "orders"}),
        ({"topic": {"$nin": ["pets", "home", "work"]}}, {"health", "orders"}),
        ({"missing": {"$exists": False}, "topic": {"$ne": "pets"}}, {"work", "health", "orders", "home"}),
    ],
)
async def test_filters_on_recall_and_list(make_service, filters, expected_topics):
    svc = await make_service()
    await _seed(svc)
    hits = await svc.recall_memory("anything at all about my life", k=10, filters=filters)
    assert {h["metadata"]["topic"] for h in hits} <= expected_topics
    listed = await svc.list_memories(filters=filters)
    assert {m["metadata"]["topic"] for m in listed["memories"]} == expected_topics


async def test_date_range_filters(make_service):
    svc = await make_service()
    for day in ("2024-01-05", "2024-02-10", "2024-03-15T08:00:00Z"):
        await svc.store_memory(f"meeting notes from {day}", metadata={"date": day})
    listed = await svc.list_memories(filters={"date": {"$gte": "2024-02-01", "$lt": "2024-03-16"}})
    assert sorted(m["metadata"]["date"] for m in listed["memories"]) == ["2024-02-10", "2024-03-15T08:00:00Z"]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"a": {"$regex": "x"}}, "unknown operator"),
        ({"$xor": []}, "unknown top-level operator"),
        ({"a": {"$in": "x"}}, "non-empty list"),
        ({"a": {"$gt": "soon"}}, "number or an ISO-8601 date"),
        ({"$or": {"a": 1}}, "non-empty list"),
        ({"a": {"b": 1}}, "scalar"),
        ({"a": {"$exists": "yes"}}, "true or false"),
    ],
)
async def test_bad_filters_are_clear_tool_errors(make_service, filters, message):
    svc = await make_service()
    with pytest.raises(ToolError, match=message):
        await svc.recall_memory("x", filters=filters)


async def test_ttl_expired_memories_never_returned_and_purged(make_service, clock):
    svc = await make_service()
    short = await svc.store_memory("The door code is 4471 today only", ttl_seconds=60)
    keep = await svc.store_memory("The door code for the office is 9000")
    assert short["id"] in [h["id"] for h in await svc.recall_memory("door code", k=5)]
    clock.advance(61)
    assert short["id"] not in [h["id"] for h in await svc.recall_memory("door code", k=5)]
    with pytest.raises(ToolError, match="unknown memory id"):
        await svc.get_memory(short["id"])
    assert [m["id"] for m in (await svc.list_memories())["memories"]] == [keep["id"]]
    assert svc.store.count("default") == 2  # still in L3 until purged
    assert await svc.purge_expired() == 1
    assert svc.store.count("default") == 1
    # storing the same content again after expiry makes a live memory again
    again = await svc.store_memory("The door code is 4471 today only")
    assert again["deduplicated"] is False
    assert (await svc.get_memory(again["id"]))["content"] == "The door code is 4471 today only"


async def test_update_reembeds_on_content_change(make_service):
    svc = await make_service()
    m = await svc.store_memory("My favourite colour is green", metadata={"kind": "pref"})
    await svc.store_memory("The car needs new tyres before winter")
    await svc.recall_memory("colour", consistency="indexed")
    idx = await svc.live.current("default")
    before = idx.vector(m["id"])
    upd = await svc.update_memory(m["id"], content="I now play the cello every evening")
    assert upd["reembedded"] is True and upd["metadata"] == {"kind": "pref"}
    assert idx.vector(m["id"]) is None  # acknowledged before it is embedded: keyword-findable at once
    assert (await svc.recall_memory("cello", k=1))[0]["id"] == m["id"]
    await svc.recall_memory("cello", consistency="indexed")
    idx = await svc.live.current("default")
    after = idx.vector(m["id"])
    assert not np.allclose(before, after)
    assert np.allclose(after, svc.embedder.embed(["I now play the cello every evening"])[0], atol=1e-5)
    hits = await svc.recall_memory("what musical instrument do I play?", k=1)
    assert hits[0]["id"] == m["id"]
    meta_only = await svc.update_memory(m["id"], metadata={"kind": "hobby"})
    assert meta_only["reembedded"] is False and meta_only["content"].startswith("I now play")
    assert np.allclose((await svc.live.current("default")).vector(m["id"]), after)
    got = await svc.get_memory(m["id"])
    assert got["metadata"] == {"kind": "hobby"}
    # persisted: a fresh service over the same files sees the new content and vector
    assert svc.store.get(m["id"])[0].content == "I now play the cello every evening"


async def test_get_list_delete_and_cursor(make_service):
    svc = await make_service()
    ids = [(await svc.store_memory(f"note number {i}"))["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await svc.list_memories(limit=3, cursor=cursor)
        seen += [m["id"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert (await svc.get_memory(ids[2]))["content"] == "note number 2"
    assert await svc.delete_memory(ids[2]) == {"id": ids[2], "deleted": True}
    with pytest.raises(ToolError, match="unknown memory id"):
        await svc.get_memory(ids[2])
    with pytest.raises(ToolError, match="unknown memory id"):
        await svc.delete_memory(ids[2])
    assert ids[2] not in [h["id"] for h in await svc.recall_memory("note number 2", k=10)]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.store_memory(""), "non-empty"),
        (lambda s: s.store_memory("   "), "non-empty"),
        (lambda s: s.store_memory("x" * 2000), "over the limit of 1000 bytes"),
        (lambda s: s.store_memory("ok", namespace=""), "namespace"),
        (lambda s: s.store_memory("ok", metadata=[1]), "JSON object"),
        (lambda s: s.store_memory("ok", ttl_seconds=-5), "ttl_seconds"),
        (lambda s: s.store_memories([]), "non-empty list"),
        (lambda s: s.store_memories([{"content": "a"}, {"content": ""}]), r"memories\[1\]"),
        (lambda s: s.recall_memory(""), "query"),
        (lambda s: s.recall_memory("q", k=0), "k must be"),
        (lambda s: s.recall_memory("q", min_score=3), "min_score"),
        (lambda s: s.get_memory("mem_nope"), "unknown memory id"),
        (lambda s: s.update_memory("mem_nope", content="x"), "unknown memory id"),
        (lambda s: s.update_memory("mem_nope"), "content and/or metadata"),
        (lambda s: s.list_memories(cursor="garbage!"), "invalid cursor"),
    ],
)
async def test_bad_input_is_a_clear_tool_error(make_service, call, message):
    svc = await make_service(max_content_bytes=1000)
    with pytest.raises(ToolError, match=message):
        await call(svc)


async def test_bad_input_through_mcp_is_an_error_result(tmp_path, monkeypatch):
    monkeypatch.setenv("MCP_GATEWAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AI_MEMORY_MAX_CONTENT_BYTES", "100")
    monkeypatch.setenv("AI_MEMORY_EMBEDDER", "hash")
    async with Client(create_server()) as client:
        res = await client.call_tool("store_memory", {"content": "y" * 101}, raise_on_error=False)
        assert res.is_error and "over the limit of 100 bytes" in res.content[0].text
        res = await client.call_tool("get_memory", {"id": "mem_x"}, raise_on_error=False)
        assert res.is_error and "unknown memory id" in res.content[0].text


async def test_min_score_and_l1_hits(make_service):
    svc = await make_service()
    await _seed(svc)
    await svc.recall_memory("golden retriever dog", k=5, consistency="indexed", use_cache=False)
    all_hits = await svc.recall_memory("golden retriever dog", k=5)
    assert all_hits[0]["score"] > all_hits[-1]["score"]
    cut = await svc.recall_memory("golden retriever dog", k=5, min_score=all_hits[0]["score"] - 1e-9)
    assert [h["id"] for h in cut] == [all_hits[0]["id"]]
    hits_before = svc.reads.hits
    again = await svc.recall_memory("golden retriever dog", k=5)
    assert again == all_hits and svc.reads.hits == hits_before + 1
    # a write to the namespace invalidates cached recalls
    new = await svc.store_memory("Our second dog, a golden retriever puppy, is named Waffles")
    fresh = await svc.recall_memory("golden retriever dog", k=5)
    assert new["id"] in [h["id"] for h in fresh]
    stats = await svc.memory_stats("default")
    assert stats["l1"]["hits"] >= 1 and 0 < stats["l1"]["hit_rate"] < 1
    assert stats["l2"]["embedder"] == "all-MiniLM-L6-v2-int8" and stats["l2"]["indexed"] == 6
    assert stats["l3"]["count"] == 6 and stats["l3"]["outbox_pending"] == 0


async def test_survives_restart_over_the_same_data_dir(make_service, tmp_path):
    svc = await make_service(tmp_path / "d")
    ids = await _seed(svc)
    await svc.close()
    svc2 = await make_service(tmp_path / "d")
    hits = await svc2.recall_memory("what is the name of my pet?", k=1, consistency="indexed")
    assert hits[0]["id"] == ids[0]
    assert (await svc2.store_memory(FACTS[0][0]))["deduplicated"] is True


async def test_close_stops_a_background_loop_that_absorbed_one_cancellation(make_service):
    """A plain `Task.cancel()` can be absorbed on the way (an inner `move_on_after` whose deadline expires at that
    moment takes it as its own, and the indexer loop waited again, for ever: CI hung in teardown). `close` must
    stop every background loop even so."""
    import asyncio

    import anyio

    svc = await make_service()
    absorbed: list[int] = []

    async def loop_that_absorbs_one_stop() -> None:
        while True:
            try:
                await anyio.sleep(3600)
            except asyncio.CancelledError:
                if absorbed:
                    raise
                absorbed.append(1)

    svc._spawn(loop_that_absorbs_one_stop(), "absorbs-one-stop")
    await anyio.sleep(0)
    closing = asyncio.create_task(svc.close())
    done, _ = await asyncio.wait({closing}, timeout=20)
    if not done:
        closing.cancel()  # a second cancellation ends the loop, so the test fails instead of hanging
        with contextlib.suppress(asyncio.CancelledError):
            await closing
    assert closing in done, "close() waited for ever on a loop that had absorbed one cancellation"
    assert absorbed == [1]
