"""The memory service: validation, the three tiers, durability, background maintenance.

Constructing a `MemoryService` does no I/O; `start()` opens the stores (the FastMCP
lifespan calls it, and every operation calls it lazily too, so an in-process mount without
a lifespan still works).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import uuid
from dataclasses import replace
from typing import Any

import anyio
import numpy as np
from fastmcp.exceptions import ToolError

from embedding.embedder import Embedder, make_embedder
from servers.ai_memory.cache import PREFIX, LocalLRUCache, RedisCache
from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.filters import FilterError, parse_filter
from servers.ai_memory.index import NamespaceIndex
from servers.ai_memory.outbox import Outbox
from servers.ai_memory.records import MemoryRecord, content_hash, derived_id, iso, now
from servers.ai_memory.store import (
    SnowflakeStore,
    SqliteStore,
    Store,
    StoreUnavailable,
    delete_namespace_op,
    delete_op,
    put_op,
)

log = logging.getLogger(__name__)

_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}$")
MAX_TTL = 10 * 365 * 24 * 3600
MAX_METADATA_BYTES = 16_384


def _bad(msg: str) -> ToolError:
    return ToolError(msg)


class MemoryService:
    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        embedder: Embedder | None = None,
        store: Store | None = None,
        cache: LocalLRUCache | RedisCache | None = None,
    ) -> None:
        self._config = config
        self._embedder = embedder
        self._store = store
        self._cache = cache
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._indexes: dict[str, NamespaceIndex] = {}
        self._partial: set[str] = set()
        self._ns_locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task] = []
        self._drain_wakeup: asyncio.Event | None = None
        self._store_ready = False
        self.outbox: Outbox | None = None
        self.use_cortex = False
        self.recall_hits = 0
        self.recall_misses = 0

    # -- lifecycle ------------------------------------------------------------------

    @property
    def config(self) -> MemoryConfig:
        if self._config is None:
            self._config = MemoryConfig.from_env()
        return self._config

    @property
    def embedder(self) -> Embedder:
        assert self._embedder is not None
        return self._embedder

    @property
    def store(self) -> Store:
        assert self._store is not None
        return self._store

    @property
    def cache(self) -> LocalLRUCache | RedisCache:
        assert self._cache is not None
        return self._cache

    async def start(self, *, background: bool = True) -> None:
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            cfg = self.config
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
            choice = cfg.embedder
            if self._store is None:
                if cfg.snowflake is not None:
                    self.use_cortex = choice in ("auto", "cortex")
                    self._store = SnowflakeStore(cfg.snowflake, use_cortex=self.use_cortex)
                else:
                    self._store = SqliteStore(cfg.data_dir / "ai_memory.sqlite3")
            else:
                self.use_cortex = bool(getattr(self._store, "computes_embeddings", False))
            if self._embedder is None:
                self._embedder = make_embedder(choice)
            if self._cache is None:
                self._cache = (
                    RedisCache(cfg.redis_url, timeout=cfg.redis_timeout)
                    if cfg.redis_url
                    else LocalLRUCache(cfg.l1_max_items)
                )
            self.outbox = Outbox(cfg.data_dir / "ai_memory_outbox.sqlite3")
            await anyio.to_thread.run_sync(self.outbox.open)
            await self._init_store()
            self._drain_wakeup = asyncio.Event()
            if background:
                self._tasks.append(asyncio.create_task(self._drain_loop(), name="ai_memory-outbox"))
                self._tasks.append(asyncio.create_task(self._purge_loop(), name="ai_memory-purge"))
                if cfg.warm_embedder and not self.use_cortex and hasattr(self.embedder, "load"):
                    self._tasks.append(asyncio.create_task(self._warm(), name="ai_memory-warm"))
            self._started = True

    async def _warm(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.embedder.load)  # type: ignore[attr-defined]
        except Exception:
            log.exception("loading the embedding model failed")

    async def _init_store(self) -> bool:
        try:
            await anyio.to_thread.run_sync(self.store.init)
            self._store_ready = True
        except StoreUnavailable as exc:
            log.warning("L3 store unavailable at start (writes go to the outbox): %s", exc)
            self._store_ready = False
        return self._store_ready

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._started:
            await self.cache.close()
            await anyio.to_thread.run_sync(self.store.close)
            if self.outbox is not None:
                self.outbox.close()
        self._started = False
        self._indexes.clear()

    # -- helpers --------------------------------------------------------------------

    def _lock(self, namespace: str) -> asyncio.Lock:
        lock = self._ns_locks.get(namespace)
        if lock is None:
            lock = self._ns_locks[namespace] = asyncio.Lock()
        return lock

    def _check_namespace(self, namespace: str) -> str:
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
            raise _bad(
                "namespace must be 1-128 characters of letters, digits and _ . : - / "
                f"starting with a letter or digit; got {namespace!r}"
            )
        return namespace

    def _check_content(self, content: str, where: str = "content") -> str:
        if not isinstance(content, str) or not content.strip():
            raise _bad(f"{where} must be a non-empty string")
        size = len(content.encode("utf-8"))
        if size > self.config.max_content_bytes:
            raise _bad(
                f"{where} is {size} bytes, over the limit of {self.config.max_content_bytes} bytes "
                "(AI_MEMORY_MAX_CONTENT_BYTES)"
            )
        return content

    def _check_metadata(self, metadata: Any, where: str = "metadata") -> dict[str, Any]:
        if metadata is None:
            return {}
        if not isinstance(metadata, dict):
            raise _bad(f"{where} must be a JSON object")
        try:
            raw = json.dumps(metadata)
        except (TypeError, ValueError) as exc:
            raise _bad(f"{where} is not JSON-serialisable: {exc}") from exc
        if len(raw) > MAX_METADATA_BYTES:
            raise _bad(f"{where} is {len(raw)} bytes of JSON, over the limit of {MAX_METADATA_BYTES}")
        return json.loads(raw)

    @staticmethod
    def _check_ttl(ttl: Any, where: str = "ttl_seconds") -> int | None:
        if ttl is None:
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0 or ttl > MAX_TTL:
            raise _bad(f"{where} must be a positive number of seconds up to {MAX_TTL}")
        return ttl

    def _filters(self, filters: Any):
        try:
            return parse_filter(filters)
        except FilterError as exc:
            raise _bad(f"invalid filters: {exc}") from exc

    async def _embed(self, texts: list[str]) -> np.ndarray | None:
        if self.use_cortex:
            return None
        return await anyio.to_thread.run_sync(self.embedder.embed, texts)

    @property
    def embedder_name(self) -> str:
        if self.use_cortex:
            from servers.ai_memory.cortex_sql import CORTEX_MODEL

            return f"cortex:{CORTEX_MODEL}"
        return self.embedder.name

    def _dim(self) -> int:
        return 1 if self.use_cortex else self.embedder.dim

    # -- L1 keys ----------------------------------------------------------------------

    @staticmethod
    def _gen_key(ns: str) -> str:
        return f"{PREFIX}gen:{ns}"

    @staticmethod
    def _rec_key(memory_id: str) -> str:
        return f"{PREFIX}rec:{memory_id}"

    async def _invalidate(self, ns: str, ids: list[str]) -> None:
        await self.cache.incr(self._gen_key(ns))
        if ids:
            await self.cache.delete(*[self._rec_key(i) for i in ids])

    # -- durable writes ------------------------------------------------------------------

    async def _write(self, ops: list[dict[str, Any]]) -> str:
        """Make ops durable. Returns "l3" or "outbox". Once the outbox holds anything, later
        writes queue behind it so the store sees every write in order."""
        assert self.outbox is not None
        if self._store_ready and len(self.outbox) == 0:
            try:
                await anyio.to_thread.run_sync(self.store.apply, ops)
                return "l3"
            except StoreUnavailable as exc:
                log.warning("L3 write failed, queueing in the outbox: %s", exc)
        await anyio.to_thread.run_sync(self.outbox.append, ops)
        if self._drain_wakeup is not None:
            self._drain_wakeup.set()
        return "outbox"

    async def drain_outbox(self) -> int:
        """Replay queued writes into L3, oldest first. Returns how many were applied."""
        assert self.outbox is not None
        if not self._store_ready and not await self._init_store():
            return 0
        applied = 0
        while True:
            batch = await anyio.to_thread.run_sync(self.outbox.peek, 500)
            if not batch:
                break
            try:
                await anyio.to_thread.run_sync(self.store.apply, [op for _, op in batch])
            except StoreUnavailable as exc:
                log.info("outbox drain paused, L3 still unavailable: %s", exc)
                break
            await anyio.to_thread.run_sync(self.outbox.remove_through, batch[-1][0])
            applied += len(batch)
        if applied and self._partial:
            # namespaces served from the outbox alone can now be loaded properly
            for ns in list(self._partial):
                self._indexes.pop(ns, None)
        return applied

    async def _drain_loop(self) -> None:
        assert self._drain_wakeup is not None
        while True:
            try:
                with anyio.move_on_after(self.config.outbox_drain_interval):
                    await self._drain_wakeup.wait()
                self._drain_wakeup.clear()
                assert self.outbox is not None
                if len(self.outbox) or not self._store_ready:
                    await self.drain_outbox()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox drain failed")
                await asyncio.sleep(self.config.outbox_drain_interval)

    # -- namespace index ---------------------------------------------------------------

    async def _ns(self, namespace: str) -> NamespaceIndex:
        idx = self._indexes.get(namespace)
        if idx is not None and namespace not in self._partial:
            return idx
        async with self._lock(namespace):
            idx = self._indexes.get(namespace)
            if idx is not None and namespace not in self._partial:
                return idx
            return await self._load(namespace)

    async def _load(self, namespace: str) -> NamespaceIndex:
        t = now()
        partial = False
        try:
            records = await anyio.to_thread.run_sync(self.store.load_namespace, namespace, t)
        except StoreUnavailable as exc:
            log.warning("loading namespace %r from L3 failed, serving the outbox only: %s", namespace, exc)
            records, partial = [], True
        by_id = {r.id: r for r in records}
        assert self.outbox is not None
        for _, op in await anyio.to_thread.run_sync(self.outbox.peek, 1_000_000):
            if op["op"] == "put" and op["record"]["namespace"] == namespace:
                r = MemoryRecord.from_json(op["record"])
                by_id[r.id] = r
            elif op["op"] == "delete":
                by_id.pop(op["id"], None)
            elif op["op"] == "delete_namespace" and op["namespace"] == namespace:
                by_id.clear()
        records = [r for r in by_id.values() if not r.expired(t)]
        if not self.use_cortex:
            stale = [
                r
                for r in records
                if r.embedding is None or r.embedder != self.embedder.name or r.embedding.shape[0] != self.embedder.dim
            ]
            if stale:
                vecs = await self._embed([r.content for r in stale])
                for r, v in zip(stale, vecs, strict=True):  # type: ignore[arg-type]
                    r.embedding, r.embedder = v, self.embedder.name
        idx = NamespaceIndex(namespace, self._dim(), self.config.ann_min_vectors)
        if records:
            vecs = None if self.use_cortex else np.stack([r.embedding for r in records])  # type: ignore[misc]
            idx.add(records, vecs)
        self._indexes[namespace] = idx
        if partial:
            self._partial.add(namespace)
        else:
            self._partial.discard(namespace)
        return idx

    async def _find(self, memory_id: str) -> MemoryRecord | None:
        if not isinstance(memory_id, str) or not memory_id:
            raise _bad("id must be a non-empty string")
        for idx in self._indexes.values():
            rec = idx.get(memory_id)
            if rec is not None:
                return rec
        try:
            rec = await anyio.to_thread.run_sync(self.store.get, memory_id)
        except StoreUnavailable as exc:
            rec = None
            assert self.outbox is not None
            for _, op in await anyio.to_thread.run_sync(self.outbox.peek, 1_000_000):
                if op["op"] == "put" and op["record"]["id"] == memory_id:
                    rec = MemoryRecord.from_json(op["record"])
                elif (op["op"] == "delete" and op["id"] == memory_id) or (
                    op["op"] == "delete_namespace" and rec is not None and rec.namespace == op["namespace"]
                ):
                    rec = None
            if rec is None:
                raise ToolError(f"memory store temporarily unavailable: {exc}") from exc
        return rec

    # -- tools ------------------------------------------------------------------------

    async def store_memory(
        self,
        content: str,
        namespace: str = "default",
        metadata: dict | None = None,
        ttl_seconds: float | None = None,
    ) -> dict[str, Any]:
        out = await self.store_memories(
            [{"content": content, "metadata": metadata, "ttl_seconds": ttl_seconds}], namespace, _single=True
        )
        return out["items"][0]

    async def store_memories(
        self, memories: list[dict[str, Any]], namespace: str = "default", *, _single: bool = False
    ) -> dict[str, Any]:
        await self.start()
        self._check_namespace(namespace)
        if not isinstance(memories, list) or not memories:
            raise _bad("memories must be a non-empty list")
        if len(memories) > self.config.max_batch:
            raise _bad(f"at most {self.config.max_batch} memories per call (AI_MEMORY_MAX_BATCH)")
        items = []
        for i, m in enumerate(memories):
            where = "" if _single else f"memories[{i}]."
            if not isinstance(m, dict):
                raise _bad(f"memories[{i}] must be an object with a content field")
            unknown = set(m) - {"content", "metadata", "ttl_seconds"}
            if unknown:
                raise _bad(f"{where or 'memory '}has unknown fields: {sorted(unknown)}")
            items.append(
                (
                    self._check_content(m.get("content"), f"{where}content"),  # type: ignore[arg-type]
                    self._check_metadata(m.get("metadata"), f"{where}metadata"),
                    self._check_ttl(m.get("ttl_seconds"), f"{where}ttl_seconds"),
                )
            )
        idx = await self._ns(namespace)
        async with self._lock(namespace):
            t = now()
            results: list[dict[str, Any] | None] = [None] * len(items)
            new: list[MemoryRecord] = []
            seen: dict[str, MemoryRecord] = {}
            for i, (content, meta, ttl) in enumerate(items):
                h = content_hash(content)
                existing_id = idx.hash_to_id.get(h)
                existing = idx.get(existing_id) if existing_id else None
                if existing is not None and not existing.expired(t):
                    results[i] = self._stored(existing, True)
                    continue
                if h in seen:
                    results[i] = self._stored(seen[h], True)
                    continue
                mid = derived_id(namespace, h)
                if mid in idx.row_of and idx.get(mid).content_hash != h:  # type: ignore[union-attr]
                    mid = "mem_" + uuid.uuid4().hex  # the derived id belongs to an updated memory
                rec = MemoryRecord(
                    id=mid,
                    namespace=namespace,
                    content=content,
                    content_hash=h,
                    metadata=meta,
                    created_at=t,
                    updated_at=t,
                    expires_at=None if ttl is None else t + ttl,
                    embedder=self.embedder_name,
                )
                seen[h] = rec
                new.append(rec)
                results[i] = self._stored(rec, False)
            if new:
                vecs = await self._embed([r.content for r in new])
                if vecs is not None:
                    for r, v in zip(new, vecs, strict=True):
                        r.embedding = v
                await self._write([put_op(r) for r in new])
                idx.add(new, vecs)
                await self._invalidate(namespace, [r.id for r in new])
        done = [r for r in results if r is not None]
        return {
            "namespace": namespace,
            "ids": [r["id"] for r in done],
            "stored": len(new),
            "deduplicated": sum(1 for r in done if r["deduplicated"]),
            "items": done,
        }

    @staticmethod
    def _stored(rec: MemoryRecord, dedup: bool) -> dict[str, Any]:
        return {
            "id": rec.id,
            "namespace": rec.namespace,
            "created_at": iso(rec.created_at),
            "deduplicated": dedup,
        }

    @staticmethod
    def _view(rec: MemoryRecord) -> dict[str, Any]:
        return {
            "id": rec.id,
            "namespace": rec.namespace,
            "content": rec.content,
            "metadata": rec.metadata,
            "created_at": iso(rec.created_at),
            "updated_at": iso(rec.updated_at),
            "expires_at": iso(rec.expires_at),
        }

    async def recall_memory(
        self,
        query: str,
        namespace: str = "default",
        k: int = 5,
        filters: dict | None = None,
        min_score: float | None = None,
        *,
        mode: str = "hybrid",
        use_cache: bool = True,
    ) -> list[dict[str, Any]]:
        await self.start()
        self._check_namespace(namespace)
        if not isinstance(query, str) or not query.strip():
            raise _bad("query must be a non-empty string")
        self._check_content(query, "query")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.max_k:
            raise _bad(f"k must be an integer from 1 to {self.config.max_k}")
        if min_score is not None and (
            isinstance(min_score, bool) or not isinstance(min_score, int | float) or not -1 <= min_score <= 1
        ):
            raise _bad("min_score must be a number between -1 and 1")
        predicate = self._filters(filters)
        t = now()
        qkey = None
        if use_cache:
            gen = await self.cache.get_int(self._gen_key(namespace))
            if gen is not None:
                digest = hashlib.sha256(
                    json.dumps([query, k, filters, min_score, mode], sort_keys=True, default=str).encode()
                ).hexdigest()[:32]
                qkey = f"{PREFIX}q:{namespace}:{gen}:{digest}"
                cached = await self.cache.get(qkey)
                if cached is not None and all(e is None or e > t for e in cached["expires"]):
                    self.recall_hits += 1
                    return cached["hits"]
            self.recall_misses += 1
        idx = await self._ns(namespace)
        dense_override = None
        qvec = None
        if mode != "keyword":
            if self.use_cortex and isinstance(self.store, SnowflakeStore):
                try:
                    pairs = await anyio.to_thread.run_sync(self.store.dense_search, namespace, query, max(50, 5 * k), t)
                    dense_override = dict(pairs)
                except StoreUnavailable as exc:
                    log.warning("Cortex search unavailable, keyword-only recall: %s", exc)
                    dense_override = {}
            else:
                qvec = (await self._embed([query]))[0]  # type: ignore[index]
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
        hits = []
        expires = []
        for rec, raw in ranked:
            score = round(float(raw), 6)
            if min_score is not None and score < min_score:
                continue
            hits.append(
                {
                    "id": rec.id,
                    "content": rec.content,
                    "score": score,
                    "metadata": rec.metadata,
                    "created_at": iso(rec.created_at),
                }
            )
            expires.append(rec.expires_at)
        if qkey is not None:
            ttl = float(self.config.l1_query_ttl)
            soonest = min((e for e in expires if e is not None), default=None)
            if soonest is not None:
                ttl = min(ttl, soonest - t)
            if ttl > 0:
                await self.cache.set(qkey, {"hits": hits, "expires": expires}, ttl)
        return hits

    async def get_memory(self, memory_id: str) -> dict[str, Any]:
        await self.start()
        if not isinstance(memory_id, str) or not memory_id:
            raise _bad("id must be a non-empty string")
        cached = await self.cache.get(self._rec_key(memory_id))
        if cached is not None:
            rec = MemoryRecord.from_json(cached)
            if not rec.expired():
                self.recall_hits += 1
                return self._view(rec)
        self.recall_misses += 1
        rec = await self._find(memory_id)
        if rec is None or rec.expired():
            raise _bad(f"unknown memory id {memory_id!r}")
        ttl = float(self.config.l1_record_ttl)
        if rec.expires_at is not None:
            ttl = min(ttl, rec.expires_at - now())
        if ttl > 0:
            await self.cache.set(self._rec_key(memory_id), rec.to_json(), ttl)
        return self._view(rec)

    async def list_memories(
        self,
        namespace: str = "default",
        limit: int = 50,
        cursor: str | None = None,
        filters: dict | None = None,
    ) -> dict[str, Any]:
        await self.start()
        self._check_namespace(namespace)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise _bad("limit must be an integer from 1 to 1000")
        predicate = self._filters(filters)
        after: tuple[float, str] | None = None
        if cursor:
            try:
                raw = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
                after = (float(raw[0]), str(raw[1]))
            except Exception as exc:
                raise _bad("invalid cursor (pass back next_cursor from a previous call)") from exc
        idx = await self._ns(namespace)
        recs = idx.listing(now(), predicate)
        if after is not None:
            recs = [r for r in recs if (r.created_at, r.id) > after]
        page = recs[:limit]
        next_cursor = None
        if len(recs) > limit:
            last = page[-1]
            next_cursor = base64.urlsafe_b64encode(json.dumps([last.created_at, last.id]).encode()).decode()
        return {"namespace": namespace, "memories": [self._view(r) for r in page], "next_cursor": next_cursor}

    async def update_memory(
        self, memory_id: str, content: str | None = None, metadata: dict | None = None
    ) -> dict[str, Any]:
        await self.start()
        if content is None and metadata is None:
            raise _bad("give content and/or metadata to update")
        if content is not None:
            self._check_content(content)
        meta = self._check_metadata(metadata) if metadata is not None else None
        rec = await self._find(memory_id)
        if rec is None or rec.expired():
            raise _bad(f"unknown memory id {memory_id!r}")
        idx = await self._ns(rec.namespace)
        async with self._lock(rec.namespace):
            current = idx.get(memory_id) or rec
            t = now()
            changed = content is not None and content_hash(content) != current.content_hash
            new = replace(
                current,
                content=content if content is not None else current.content,
                content_hash=content_hash(content) if content is not None else current.content_hash,
                metadata=meta if meta is not None else current.metadata,
                updated_at=t,
            )
            if changed:
                vecs = await self._embed([new.content])
                new.embedding = None if vecs is None else vecs[0]
            else:
                new.embedding = idx.vector(memory_id) if not self.use_cortex else None
            await self._write([put_op(new)])
            idx.add([new], None if new.embedding is None else new.embedding[None, :])
            await self._invalidate(rec.namespace, [memory_id])
        view = self._view(new)
        view["reembedded"] = changed
        return view

    async def delete_memory(self, memory_id: str) -> dict[str, Any]:
        await self.start()
        rec = await self._find(memory_id)
        if rec is None:
            raise _bad(f"unknown memory id {memory_id!r}")
        idx = await self._ns(rec.namespace)
        async with self._lock(rec.namespace):
            await self._write([delete_op(memory_id)])
            idx.remove(memory_id)
            await self._invalidate(rec.namespace, [memory_id])
        return {"id": memory_id, "deleted": True}

    async def delete_namespace(self, namespace: str) -> dict[str, Any]:
        await self.start()
        self._check_namespace(namespace)
        idx = await self._ns(namespace)
        async with self._lock(namespace):
            ids = list(idx.row_of)
            await self._write([delete_namespace_op(namespace)])
            self._indexes[namespace] = NamespaceIndex(namespace, self._dim(), self.config.ann_min_vectors)
            await self._invalidate(namespace, ids)
        return {"namespace": namespace, "deleted": len(ids)}

    async def purge_expired(self) -> int:
        """Delete expired memories from L3 and drop them from the index and L1."""
        await self.start()
        t = now()
        gone: dict[str, list[str]] = {}
        if self._store_ready:
            try:
                for mid, ns in await anyio.to_thread.run_sync(self.store.purge_expired, t):
                    gone.setdefault(ns, []).append(mid)
            except StoreUnavailable as exc:
                log.info("purge skipped, L3 unavailable: %s", exc)
        for ns, idx in self._indexes.items():
            for mid in idx.expired_ids(t):
                if mid not in gone.get(ns, []):
                    gone.setdefault(ns, []).append(mid)
        for ns, ids in gone.items():
            idx = self._indexes.get(ns)
            if idx is not None:
                for mid in ids:
                    idx.remove(mid)
            await self._invalidate(ns, ids)
        return sum(len(v) for v in gone.values())

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.purge_interval)
            try:
                await self.purge_expired()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("purging expired memories failed")

    async def memory_stats(self, namespace: str | None = None) -> dict[str, Any]:
        await self.start()
        if namespace is not None:
            self._check_namespace(namespace)
            await self._ns(namespace)
        l3_count: int | None
        try:
            l3_count = await anyio.to_thread.run_sync(self.store.count, namespace)
        except StoreUnavailable:
            l3_count = None
        assert self.outbox is not None
        idxs = [self._indexes[namespace]] if namespace is not None else list(self._indexes.values())
        total = self.recall_hits + self.recall_misses
        l1: dict[str, Any] = {
            "backend": self.cache.backend,
            "available": self.cache.available,
            "hits": self.recall_hits,
            "misses": self.recall_misses,
            "hit_rate": round(self.recall_hits / total, 4) if total else 0.0,
        }
        if isinstance(self.cache, LocalLRUCache):
            l1["items"] = len(self.cache._data)
        return {
            "namespace": namespace,
            "l1": l1,
            "l2": {
                "embedder": self.embedder_name,
                "dim": 768 if self.use_cortex else self.embedder.dim,
                "indexed": sum(len(i) for i in idxs),
                "index_bytes": sum(i.nbytes() for i in idxs),
                "namespaces_loaded": len(self._indexes),
                "fusion": self.config.fusion,
            },
            "l3": {
                "backend": self.store.name,
                "available": self._store_ready and l3_count is not None,
                "count": l3_count,
                "outbox_pending": len(self.outbox),
            },
        }
