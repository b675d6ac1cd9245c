"""The Redis users other than the gateway processes, against a real three-node Redis Cluster: the cache's
multi-key read stays in one slot, rate-limit buckets and ai_memory's L1 work through `redis+cluster://`.
(Three gateway replicas on a cluster: tests/ops/test_replicas.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from gateway.config.resilience import CacheSettings, RedisSettings
from gateway.guard.ratelimit import RedisBuckets
from gateway.resilience.cache import Cache
from gateway.resilience.redis_link import RedisLink, is_cluster, plain_url
from servers.ai_memory.cache import RedisCache
from tests.gateway.resilience.conftest import until
from tests.helpers.redis_cluster import RedisCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    missing = RedisCluster.available()
    if missing:
        pytest.skip(missing)
    nodes = RedisCluster(tmp_path)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.kill()


def test_cluster_urls() -> None:
    assert is_cluster("redis+cluster://h:1") and is_cluster("REDISS+CLUSTER://h:1") and not is_cluster("redis://h")
    assert plain_url("rediss+cluster://:pw@h:1/0") == "rediss://:pw@h:1/0"
    assert plain_url("redis://h:1") == "redis://h:1"


async def test_cache_keys_of_a_server_share_a_slot(cluster: RedisCluster) -> None:
    link = RedisLink(cluster.url, RedisSettings())
    cache = Cache(CacheSettings(), link, {"hubspot": "hubspot~0123456789ab", "gong": "gong~ba9876543210"})
    for server in ("hubspot", "gong"):
        slots = {
            cluster.cli(cluster.ports[0], "cluster", "keyslot", key).strip()
            for key in (
                cache._gen_key(server),
                cache._l2_key((server, "search", '{"q":"a"}', "alice")),
                cache._l2_key((server, "get", '{"id":1}', "*")),
            )
        }
        assert len(slots) == 1, slots
    await link.aclose()


async def test_cache_reads_on_a_cluster_go_through_redis_py(cluster: RedisCluster) -> None:
    """A cluster keeps its reads on redis-py (`mget_nonatomic`: keys in different slots), batched all the same."""
    link = RedisLink(cluster.url, RedisSettings(timeout=5.0))
    assert link.pipe is None
    async with anyio.create_task_group() as group:
        group.start_soon(link.serve)
        await until(lambda: link.listening)  # the slot map is loaded
        await link.client.mset_nonatomic({"{a}x": b"1", "{b}y": b"2"})
        got = await asyncio.gather(link.read("{a}x", "{b}y"), link.read("{b}y", "missing"))
        assert got == [[b"1", b"2"], [b"2", None]]
        assert link.batches == 1 and link.errors == 0
        group.cancel_scope.cancel()
    await link.aclose()


async def test_rate_limit_buckets_on_a_cluster(cluster: RedisCluster) -> None:
    buckets = RedisBuckets(cluster.url)
    waits = [await buckets.take(name, 1.0, 2) for name in ("a", "a", "a", "b")]
    assert waits[:2] == [0.0, 0.0] and waits[2] > 0 and waits[3] == 0.0
    assert not buckets.fallback.buckets  # Redis answered every time
    await buckets.client.aclose()


async def test_ai_memory_l1_on_a_cluster(cluster: RedisCluster) -> None:
    cache = RedisCache(cluster.url)
    await cache.set("aimem:rec:a", {"x": 1}, 10)
    await cache.set("aimem:rec:b", {"x": 2}, 10)
    assert await cache.get("aimem:rec:a") == {"x": 1}
    await cache.raise_to("aimem:ver:ns", 1)  # a Lua script on one key: runs on a cluster
    await cache.delete("aimem:rec:a", "aimem:rec:b")  # keys in different slots: split by the client
    assert await cache.get("aimem:rec:b") is None
    assert await cache.get_int("aimem:ver:ns") == 1
    assert cache.stats.errors == 0
    await cache.close()
