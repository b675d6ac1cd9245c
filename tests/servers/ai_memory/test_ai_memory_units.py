"""Unit tests: the filter language, the numpy embedder against the reference implementation, L1 LRU."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from servers.ai_memory.cache import LocalLRUCache
from servers.ai_memory.filters import FilterError, parse_filter


def test_filter_semantics():
    meta = {
        "topic": "billing",
        "tags": ["vip", "eu"],
        "n": 3,
        "due": "2024-05-01",
        "c": {"tier": "gold"},
        "flag": True,
    }

    def ok(f):
        return parse_filter(f)(meta)

    assert ok({"topic": "billing"}) and not ok({"topic": "Billing"})
    assert ok({"tags": "vip"}) and ok({"tags": {"$in": ["x", "eu"]}}) and not ok({"tags": {"$nin": ["eu"]}})
    assert ok({"n": {"$gte": 3, "$lt": 3.5}}) and not ok({"n": {"$gt": 3}})
    assert ok({"due": {"$gte": "2024-04-30T23:00:00Z", "$lte": "2024-05-01"}})
    assert not ok({"topic": {"$gt": 1}})  # a string never satisfies a numeric range
    assert ok({"c.tier": "gold"}) and not ok({"c.tier": {"$exists": False}})
    assert ok({"flag": True}) and not ok({"flag": 1})
    assert ok({"$or": [{"n": 9}, {"$and": [{"topic": "billing"}, {"$not": {"n": 4}}]}]})
    assert parse_filter(None) is None and parse_filter({}) is None
    with pytest.raises(FilterError, match=r"filters\.\$or\[1\]"):
        parse_filter({"$or": [{"a": 1}, "nope"]})


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None,
    reason="sentence-transformers (the wheel's torch reference) not installed",
)
def test_numpy_minilm_matches_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    from embedding.embedder import default_model_dir

    texts = ["The cat sat on the mat.", "Order ORD-4821 shipped to Lisbon", "word " * 400, "é ü ß 東京"]
    ref = SentenceTransformer(str(default_model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    ours = minilm.embed(texts)
    assert ours.shape == (4, 384)
    assert np.all(np.sum(ours * ref, axis=1) > 0.9999)


def test_minilm_semantics(minilm):
    v = minilm.embed(["a puppy playing", "a young dog at play", "quarterly tax filing"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


async def test_local_lru_is_bounded_and_expires(monkeypatch):
    import servers.ai_memory.cache as cache_mod

    t = [1000.0]
    monkeypatch.setattr(cache_mod.time, "monotonic", lambda: t[0])
    c = LocalLRUCache(max_items=2)
    await c.set("a", 1, ttl=10)
    await c.set("b", 2, ttl=10)
    assert await c.get("a") == 1  # a is now most recent
    await c.set("c", 3, ttl=10)
    assert await c.get("b") is None and await c.get("a") == 1
    t[0] += 11
    assert await c.get("a") is None
    await c.raise_to("g", 2)
    await c.raise_to("g", 1)  # a signal only ever raises
    assert await c.get_int("g") == 2
