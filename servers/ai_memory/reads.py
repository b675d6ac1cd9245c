"""The read path: get, list and recall, each answered from an index caught up with L3.

Caching (L1: Redis or the in-process LRU) never decides what is true. Every cached record and
every cached recall carries the namespace version it was computed at, and is served only while
that is still the version L3 has (`LiveIndexes.stamp`): after any write, and after Redis is
flushed or restored from an older snapshot, old copies are misses. Nothing is cached while this
data dir's outbox holds writes L3 has not seen, nor a recall that lost its semantic side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from fastmcp.exceptions import ToolError

from servers.ai_memory.cache import LocalLRUCache, RedisCache
from servers.ai_memory.coherence import LiveIndexes
from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.index import NamespaceIndex
from servers.ai_memory.outbox import Outbox
from servers.ai_memory.records import MemoryRecord, iso, now
from servers.ai_memory.store import Store, StoreRejected, StoreUnavailable, op_record
from servers.ai_memory.validation import Validator
from servers.ai_memory.writes import record_key

log = logging.getLogger(__name__)

QUERY_VECTORS = 1024  # query embeddings kept (1.5 KB each for MiniLM): an agent repeats its queries


@dataclass
class Recall:
    hits: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)  # why this answer may be incomplete
    meta: dict[str, Any] = field(default_factory=dict)


def view(rec: MemoryRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "namespace": rec.namespace,
        "content": rec.content,
        "metadata": rec.metadata,
        "created_at": iso(rec.created_at),
        "updated_at": iso(rec.updated_at),
        "expires_at": iso(rec.expires_at),
    }


class ReadPath:
    def __init__(
        self,
        config: MemoryConfig,
        store: Store,
        outbox: Outbox,
        cache: LocalLRUCache | RedisCache,
        live: LiveIndexes,
        validator: Validator,
        *,
        embed: Callable[[list[str]], Awaitable[np.ndarray]],
    ) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.cache = cache
        self.live = live
        self.check = validator
        self._embed = embed
        self.qvec_cache: OrderedDict[str, np.ndarray] = OrderedDict()  # query text -> its vector (LRU)
        self.hits = 0
        self.misses = 0
        self.by_namespace: dict[str, list[int]] = {}  # namespace -> [hits, misses] (memory_stats shows one)

    def _count(self, namespace: str | None, *, hit: bool) -> None:
        """One L1 hit or miss, in the totals and in its namespace's counters (None: an unknown id)."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        if namespace is not None:
            self.by_namespace.setdefault(namespace, [0, 0])[0 if hit else 1] += 1

    # -- by id -------------------------------------------------------------------------------

    async def find(self, memory_id: str) -> MemoryRecord | None:
        """The current record, wherever it is: a caught-up index, L3, the pending outbox."""
        rec, _ = await self._find(memory_id)
        return rec

    async def _find(self, memory_id: str) -> tuple[MemoryRecord | None, int | None]:
        """(record, the namespace version it was read at; None when it must not be cached)."""
        self.check.memory_id(memory_id)
        for ns, idx in list(self.live.indexes.items()):
            if memory_id in idx.row_of and ns not in self.live.partial:
                idx = await self.live.current(ns)
                rec = idx.get(memory_id)
                if rec is not None:
                    return rec, None
        try:
            rec, version = await anyio.to_thread.run_sync(self.store.get, memory_id)
        except StoreUnavailable as exc:
            rec, version = None, None
            if self.outbox.depth == 0:
                raise ToolError(f"memory store temporarily unavailable: {exc}") from exc
        if self.outbox.depth:
            before = rec
            rec = await self._outbox_view(memory_id, rec)
            if rec is not before or rec is None:
                version = None
        return rec, version

    async def _outbox_view(self, memory_id: str, rec: MemoryRecord | None) -> MemoryRecord | None:
        for _, op in await anyio.to_thread.run_sync(self.outbox.peek, 1_000_000):
            kind = op.get("op")
            if kind == "put" and op["record"]["id"] == memory_id:
                rec = op_record(op)
            elif (kind == "delete" and op["id"] == memory_id) or (
                kind == "delete_namespace" and rec is not None and rec.namespace == op["namespace"]
            ):
                rec = None
        return rec

    async def get(self, memory_id: str) -> dict[str, Any]:
        self.check.memory_id(memory_id)
        cached = await self.cache.get(record_key(memory_id))
        if isinstance(cached, dict) and "v" in cached:
            rec = MemoryRecord.from_json(cached["r"])
            if not rec.expired() and cached["v"] == await self.live.stamp(rec.namespace):
                self._count(rec.namespace, hit=True)
                return view(rec)
        rec, version = await self._find(memory_id)
        self._count(rec.namespace if rec is not None else None, hit=False)
        if rec is None or rec.expired():
            raise ToolError(f"unknown memory id {memory_id!r}")
        if version is None and rec.namespace in self.live.indexes and self.outbox.depth == 0:
            version = self.live.indexes[rec.namespace].version
        ttl = float(self.config.l1_record_ttl)
        if rec.expires_at is not None:
            ttl = min(ttl, rec.expires_at - now())
        if version is not None and ttl > 0:
            await self.cache.set(record_key(memory_id), {"v": version, "r": rec.to_json()}, ttl)
        return view(rec)

    # -- by namespace ----------------------------------------------------------------------------

    async def list(self, namespace: str, limit: int, cursor: str | None, filters: dict | None) -> dict[str, Any]:
        self.check.namespace(namespace)
        self.check.limit(limit)
        predicate = self.check.filters(filters)
        after = self.check.cursor(cursor)
        idx = await self.live.current(namespace)
        recs = idx.listing(now(), predicate)
        if after is not None:
            recs = [r for r in recs if (r.created_at, r.id) > after]
        page = recs[:limit]
        next_cursor = None
        if len(recs) > limit:
            next_cursor = self.check.make_cursor(page[-1].created_at, page[-1].id)
        return {"namespace": namespace, "memories": [view(r) for r in page], "next_cursor": next_cursor}

    async def recall(
        self,
        query: str,
        namespace: str,
        k: int,
        filters: dict | None,
        min_score: float | None,
        *,
        mode: str = "hybrid",
        consistency: str = "eventual",
        use_cache: bool = True,
    ) -> Recall:
        self.check.namespace(namespace)
        self.check.recall(query, k, min_score, consistency)
        predicate = self.check.filters(filters)
        started = time.monotonic()
        dense_search = getattr(self.store, "dense_search", None)  # L3 ranks by meaning itself
        idx = await self.live.current(namespace)
        out = Recall([])
        if consistency == "indexed" and dense_search is None:
            waited = await self._wait_indexed(namespace, idx, started + self.config.indexed_timeout)
            idx = self.live.indexes[namespace]
            if waited:
                out.meta["index_lag"] = waited
                out.notes.append(
                    f"{waited} memories were still being embedded when the wait for the index ended "
                    "(AI_MEMORY_INDEXED_TIMEOUT); they were matched by keyword only"
                )
        t = now()
        version = idx.version
        qkey = None
        if use_cache and not out.notes and self.outbox.depth == 0 and namespace not in self.live.partial:
            digest = hashlib.sha256(
                json.dumps([query, k, filters, min_score, mode], sort_keys=True, default=str).encode()
            ).hexdigest()[:32]
            qkey = f"q:{namespace}:{version}:{digest}"
            cached = await self.cache.get(qkey)
            if cached is not None and all(e is None or e > t for e in cached["expires"]):
                self._count(namespace, hit=True)
                return Recall(cached["hits"])
            self._count(namespace, hit=False)
        qvec = None
        if mode != "keyword" and dense_search is None:
            qvec = await self.query_vector(query)
            idx = self.live.indexes[namespace]  # the same object, or a reload that happened meanwhile
        dense_override = None
        if mode != "keyword" and dense_search is not None:
            try:
                pairs = await anyio.to_thread.run_sync(dense_search, namespace, query, max(50, 5 * k), t, filters)
                dense_override = dict(pairs)
            except (StoreUnavailable, StoreRejected) as exc:
                log.warning("semantic search in L3 failed, keyword-only recall: %s", exc)
                dense_override = {}
                out.meta["semantic"] = "unavailable"
                out.notes.append(f"semantic search was unavailable ({exc}); these hits are keyword matches only")
                qkey = None
            idx = self.live.indexes[namespace]
            if dense_override:
                idx = await self._adopt_unknown(idx, dense_override)
        ranked = idx.search(
            qvec,
            query,
            k,
            now=t,
            predicate=predicate,
            mode=mode,
            fusion=self.config.fusion,
            dense_override=dense_override,
        )
        expires = []
        for rec, raw in ranked:
            score = round(float(raw), 6)
            if min_score is not None and score < min_score:
                continue
            out.hits.append(
                {
                    "id": rec.id,
                    "content": rec.content,
                    "score": score,
                    "metadata": rec.metadata,
                    "created_at": iso(rec.created_at),
                }
            )
            expires.append(rec.expires_at)
        if qkey is not None and idx.version == version:
            ttl = float(self.config.l1_query_ttl)
            soonest = min((e for e in expires if e is not None), default=None)
            if soonest is not None:
                ttl = min(ttl, soonest - t)
            if ttl > 0:
                await self.cache.set(qkey, {"hits": out.hits, "expires": expires}, ttl)
        return out

    async def query_vector(self, query: str) -> np.ndarray:
        """The query's embedding, from the LRU of recent queries when it was asked before (the
        embedder is fixed for the life of the service, so a vector never goes stale)."""
        qvec = self.qvec_cache.get(query)
        if qvec is None:
            qvec = (await self._embed([query]))[0].copy()
            qvec.setflags(write=False)
            self.qvec_cache[query] = qvec
            if len(self.qvec_cache) > QUERY_VECTORS:
                self.qvec_cache.popitem(last=False)
        else:
            self.qvec_cache.move_to_end(query)
        return qvec

    async def _adopt_unknown(self, idx: NamespaceIndex, dense: dict[str, float]) -> NamespaceIndex:
        """L3 ranked ids this index has not caught up with yet: catch up rather than drop them."""
        if any(mid not in idx.row_of for mid in dense):
            return await self.live.catch_up(idx.namespace)
        return idx

    async def _wait_indexed(self, namespace: str, idx: NamespaceIndex, deadline: float) -> int:
        """Wait until every memory in the index now is embedded (or gone). Returns how many are not."""
        waiting = {r.id: r.content_hash for r in idx.unembedded()}
        while waiting:
            if time.monotonic() >= deadline:
                return len(waiting)
            await anyio.sleep(0.05)
            idx = await self.live.current(namespace)
            waiting = {
                mid: h
                for mid, h in waiting.items()
                if (r := idx.get(mid)) is not None and r.content_hash == h and idx.vector(mid) is None
            }
        return 0
