"""The Snowflake + Cortex path executed end to end against fakesnow, with AI_EMBED,
SNOWFLAKE.CORTEX.EMBED_TEXT_768 and VECTOR_COSINE_SIMILARITY given to its DuckDB (fake_cortex.py)
and backed by the real local model: the SQL the server sends to Snowflake is the SQL that runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import snowflake.connector
from fastmcp import Client
from fastmcp.exceptions import ToolError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers.ai_memory.cortex_sql import Cortex, FilterSQL, chunks
from servers.ai_memory.filters import parse_filter
from servers.ai_memory.server import create_server
from servers.ai_memory.snowflake_store import SnowflakeStore

from .conftest import snowflake_settings
from .fake_cortex import cortex_functions


@pytest.fixture(scope="module")
def cortex(fakesnow_kwargs: dict[str, Any], minilm) -> Iterator[list[str]]:
    with cortex_functions(minilm, fakesnow_kwargs) as embedded:
        yield embedded


def cortex_store(kwargs: dict[str, Any], function: str = "AI_EMBED", settings: Any = None) -> SnowflakeStore:
    return SnowflakeStore(settings or snowflake_settings(kwargs), cortex=Cortex(function))


async def test_cortex_embeds_in_snowflake_and_ranks_there(make_service, fakesnow_kwargs, cortex):
    store = cortex_store(fakesnow_kwargs)
    svc = await make_service(store=store)
    assert (await svc.memory_stats())["l2"]["embedder"] == "cortex:snowflake-arctic-embed-l-v2.0"
    dog = await svc.store_memory("My dog is a golden retriever called Biscuit", metadata={"topic": "pets"})
    await svc.store_memory("The quarterly tax filing is due on the 15th", metadata={"topic": "money"})
    assert "My dog is a golden retriever called Biscuit" in cortex  # embedded by AI_EMBED, in SQL
    hits = await svc.recall_memory("what is my pet's name?", k=1)  # no shared keyword: meaning only
    assert hits[0]["id"] == dog["id"]
    # a metadata-only update keeps the vector; a content change re-embeds in SQL
    seen = len(cortex)
    await svc.update_memory(dog["id"], metadata={"topic": "animals"})
    assert len(cortex) == seen
    await svc.update_memory(dog["id"], content="Our cat Miso sleeps on the radiator")
    assert cortex[-1] == "Our cat Miso sleeps on the radiator"
    assert (await svc.recall_memory("which animal naps somewhere warm", k=1))[0]["id"] == dog["id"]


async def test_filters_are_pushed_into_the_where_clause(make_service, fakesnow_kwargs, cortex):
    svc = await make_service(store=cortex_store(fakesnow_kwargs))
    await svc.store_memories(
        [{"content": f"Dogs are loyal companions, note {i}", "metadata": {"team": "a"}} for i in range(70)]
    )
    b = await svc.store_memory("My puppy adores long walks outside", metadata={"team": "b", "n": 3})
    # 70 closer matches would fill Snowflake's top 50; the filter in SQL leaves only b to rank
    hits = await svc.recall_memory("canine friend", k=1, filters={"team": "b"})
    assert [h["id"] for h in hits] == [b["id"]]
    hits = await svc.recall_memory("canine friend", k=1, filters={"$and": [{"team": "b"}, {"n": {"$gte": 2}}]})
    assert [h["id"] for h in hits] == [b["id"]]
    assert await svc.recall_memory("canine friend", k=1, filters={"n": {"$gt": 3}}) == []


async def test_unknown_ids_from_snowflake_are_kept(make_service, fakesnow_kwargs, cortex, tmp_path):
    settings = snowflake_settings(fakesnow_kwargs)
    reader = await make_service(tmp_path / "r", store=cortex_store(fakesnow_kwargs, settings=settings),
                                sync_interval=3600)  # fmt: skip
    await reader.store_memory("Invoices are sent on the first Monday")
    writer = await make_service(tmp_path / "w", store=cortex_store(fakesnow_kwargs, settings=settings))
    new = await writer.store_memory("The espresso machine descaling happens every Friday")
    # the reader polls L3 only hourly and has no Redis: Snowflake names an id it has not seen
    hits = await reader.recall_memory("coffee maker maintenance schedule", k=1)
    assert hits[0]["id"] == new["id"]


async def test_legacy_embed_text_768_setting(make_service, fakesnow_kwargs, cortex):
    svc = await make_service(store=cortex_store(fakesnow_kwargs, function="EMBED_TEXT_768"))
    m = await svc.store_memory("The spare key is under the blue flower pot")
    assert (await svc.recall_memory("where can I find a house key", k=1))[0]["id"] == m["id"]
    assert svc.store.cortex.dim == 768


async def test_recall_that_lost_its_semantic_side_says_so(make_service, fakesnow_kwargs, cortex):
    store = cortex_store(fakesnow_kwargs)
    svc = await make_service(store=store)
    m = await svc.store_memory("Quarterly planning happens in the Oslo office")
    store.cortex.model = "no-such-model"  # Snowflake refuses the query's embedding call
    store.cortex.function = "NO_SUCH_FUNCTION"
    async with Client(create_server(service=svc)) as client:
        res = await client.call_tool("recall_memory", {"query": "Oslo planning", "k": 3})
    assert [h["id"] for h in res.structured_content["result"]] == [m["id"]]  # keyword side still answers
    assert res.meta["ai_memory/semantic"] == "unavailable"
    assert any("keyword matches only" in c.text for c in res.content)


def test_filter_sql_never_excludes_a_match():
    """What is pushed down keeps at least what the exact filter keeps; the rest becomes TRUE."""
    for spec in ({"topic": True}, {"a.b": 1}, {"x": {"$ne": 1}}, {"$not": {"x": 1}}, {"d": {"$gte": "2024-01-01"}}):
        parse_filter(spec)
        assert FilterSQL().compile(spec) == "TRUE"
    f = FilterSQL()
    sql = f.compile({"$or": [{"team": "b"}, {"n": {"$in": [1, 2]}}]})
    assert "IS_ARRAY" in sql and set(f.params.values()) == {"b", 1.0, 2.0}
    assert FilterSQL().compile({"$or": [{"team": "b"}, {"x": {"$ne": 1}}]}) == "TRUE"


def test_statements_are_chunked_under_one_megabyte():
    rows = [["x" * 30_000, i] for i in range(100)]
    parts = list(chunks(rows))
    assert sum(len(p) for p in parts) == 100 and len(parts) > 1
    assert all(sum(len(str(v)) for r in p for v in r) < 1_000_000 for p in parts)


async def test_two_replicas_over_snowflake_and_redis_are_one_memory(
    make_service, fakesnow_kwargs, cortex, redis_server, tmp_path
):
    """Two services (two replicas: own data dir, own index) over one Snowflake schema and one Redis,
    sync_interval an hour: only the Redis signal can tell B about A's writes, at once."""
    settings = snowflake_settings(fakesnow_kwargs)
    a, b = [
        await make_service(
            tmp_path / name,
            store=cortex_store(fakesnow_kwargs, settings=settings),
            redis_url=redis_server.url,
            sync_interval=3600,
        )
        for name in ("a", "b")
    ]
    x = await a.store_memory("The Acme contract renews in March", metadata={"team": "sales"})
    y = await a.store_memory("The Acme contract needs a legal review", metadata={"team": "legal"})
    for svc in (a, b):  # both read (and cache) the first state
        assert {h["id"] for h in await svc.recall_memory("Acme contract", k=5)} == {x["id"], y["id"]}
        assert (await svc.get_memory(x["id"]))["content"].endswith("March")
    client = redis.Redis.from_url(redis_server.url)
    client.save()  # the snapshot a restored Redis comes back with
    await a.delete_memory(y["id"])
    await b.update_memory(x["id"], content="The Acme contract renews in April")
    for svc in (a, b):
        hits = await svc.recall_memory("Acme contract", k=5)
        assert [h["content"] for h in hits] == ["The Acme contract renews in April"]
        assert await svc.recall_memory("Acme contract", k=5, filters={"team": "legal"}) == []
        assert [m["id"] for m in (await svc.list_memories())["memories"]] == [x["id"]]
        with pytest.raises(ToolError):
            await svc.get_memory(y["id"])
    redis_server.kill()
    redis_server.start()  # back from the snapshot taken before the delete and the update
    assert client.dbsize() > 0
    for svc in (a, b):
        svc.cache._down_until = 0.0  # skip the back-off instead of sleeping through it
        assert (await svc.get_memory(x["id"]))["content"].endswith("April")
        with pytest.raises(ToolError):
            await svc.get_memory(y["id"])
        assert [h["id"] for h in await svc.recall_memory("Acme contract", k=5)] == [x["id"]]


KEYS = ["team", "n", "tags", "flag"]
SCALARS = st.one_of(st.sampled_from(["a", "b", "c", "3", "2024-05-01"]), st.integers(-2, 4), st.booleans())
FIELD = st.one_of(
    SCALARS,
    st.fixed_dictionaries({"$in": st.lists(SCALARS, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"$gte": st.integers(-2, 4)}),
    st.fixed_dictionaries({"$lt": st.integers(-2, 4)}),
    st.fixed_dictionaries({"$ne": SCALARS}),
    st.fixed_dictionaries({"$exists": st.booleans()}),
)
FILTERS = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), FIELD, min_size=1, max_size=2),
    lambda inner: st.one_of(
        st.fixed_dictionaries({"$or": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"$and": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"$not": inner}),
    ),
    max_leaves=6,
)
ROWS = [
    {"team": "a", "n": 3, "tags": ["a", "b"]},
    {"team": "b", "n": "3", "flag": True},
    {"team": "c", "n": -1.5, "tags": [3, "c"]},
    {"n": 0, "flag": False, "tags": []},
    {"team": "2024-05-01", "n": 4},
    {"team": ["a", "c"], "n": None},
    {},
]


@pytest.fixture(scope="module")
def metadata_table(fakesnow_kwargs):
    conn = snowflake.connector.connect(**fakesnow_kwargs, database="FILTERDB", schema="P")
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS MEMORIES (ID NUMBER, METADATA VARIANT)")
    for i, meta in enumerate(ROWS):
        cur.execute("INSERT INTO MEMORIES SELECT %s, PARSE_JSON(%s)", (i, json.dumps(meta)))
    yield cur
    conn.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=FILTERS)
def test_pushed_down_filter_keeps_every_match(metadata_table, spec):
    """Property: the WHERE clause sent to Snowflake keeps every row the exact filter keeps."""
    exact = parse_filter(spec)
    where = FilterSQL()
    sql = where.compile(spec)
    metadata_table.execute(f"SELECT ID FROM MEMORIES WHERE {sql} ORDER BY ID", where.params)
    kept = {r[0] for r in metadata_table.fetchall()}
    assert {i for i, meta in enumerate(ROWS) if exact(meta)} <= kept, sql
