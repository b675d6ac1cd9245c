"""The memory service: wires the tiers together and owns their lifecycle.

What each part owns: validation.py (arguments), writes.py (durable writes and their signal),
reads.py (get / list / recall over caught-up indexes), coherence.py (keeping each replica's
indexes in step with L3), maintenance.py (outbox replay, embedding, purge). The store says
what it can do (store.py); nothing here asks which store it is.

Constructing a `MemoryService` does no I/O; `start()` opens the stores (the FastMCP lifespan
calls it, and every operation calls it lazily too, so an in-process mount without a lifespan
still works).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import anyio
import numpy as np
from fastmcp.exceptions import ToolError

from embedding.embedder import Embedder, make_embedder
from servers.ai_memory.cache import LocalLRUCache, RedisCache, redis_prefix
from servers.ai_memory.coherence import LiveIndexes, version_key
from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.maintenance import Drainer, Indexer, Purger
from servers.ai_memory.outbox import Outbox
from servers.ai_memory.reads import ReadPath, Recall, view
from servers.ai_memory.records import MemoryRecord
from servers.ai_memory.sqlite_store import SqliteStore
from servers.ai_memory.store import Store, StoreRejected, StoreUnavailable
from servers.ai_memory.validation import Validator
from servers.ai_memory.writes import WritePath

log = logging.getLogger(__name__)

DEAD_LETTER_ACTIONS = ("list", "replay", "discard")


def open_store(cfg: MemoryConfig) -> Store:
    if cfg.snowflake is not None:
        from servers.ai_memory.cortex_sql import Cortex
        from servers.ai_memory.snowflake_store import SnowflakeStore

        cortex = None
        if cfg.embedder in ("auto", "cortex"):
            cortex = Cortex(cfg.cortex_function, cfg.cortex_model, cfg.cortex_dim)
        return SnowflakeStore(cfg.snowflake, cortex=cortex, tombstone_retention=cfg.tombstone_retention)
    return SqliteStore(
        cfg.data_dir / "ai_memory.sqlite3",
        busy_timeout=cfg.sqlite_busy_timeout,
        tombstone_retention=cfg.tombstone_retention,
    )


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
        self._tasks: list[tuple[asyncio.Task, anyio.CancelScope]] = []
        self._store_ready = False
        self.outbox: Outbox | None = None

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

    @property
    def local_vectors(self) -> bool:
        """Vectors are computed here (False when L3 embeds and ranks by meaning itself)."""
        return not self.store.computes_embeddings

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
            if self._store is None:
                self._store = open_store(cfg)
            if self._embedder is None:
                self._embedder = make_embedder("hash" if cfg.embedder == "cortex" else cfg.embedder)
            if self._cache is None:
                self._cache = (
                    RedisCache(
                        cfg.redis_url,
                        timeout=cfg.redis_timeout,
                        prefix=redis_prefix(self._store.identity, cfg.redis_prefix),
                    )
                    if cfg.redis_url
                    else LocalLRUCache(cfg.l1_max_items)
                )
            self.outbox = Outbox(cfg.data_dir / "ai_memory_outbox.sqlite3")
            await anyio.to_thread.run_sync(self.outbox.open)
            await self._connect()
            self._wire()
            if background:
                self._spawn(self.drainer.run(), "ai_memory-outbox")
                self._spawn(self.purger.run(), "ai_memory-purge")
                if self.local_vectors:
                    self._spawn(self.indexer.run(), "ai_memory-indexer")
                    if cfg.warm_embedder and hasattr(self.embedder, "load"):
                        self._spawn(self._warm(), "ai_memory-warm")
            self._started = True

    def _wire(self) -> None:
        cfg, store, outbox = self.config, self.store, self.outbox
        assert outbox is not None
        name, dim = self.embedder.name, (1 if not self.local_vectors else self.embedder.dim)
        self.check = Validator(cfg)
        self.live = LiveIndexes(
            cfg,
            store,
            self.cache,
            outbox,
            dim=dim,
            vector_ok=lambda r: r.embedder == name and r.embedding is not None and r.embedding.shape[0] == dim,
        )
        self.reads = ReadPath(cfg, store, outbox, self.cache, self.live, self.check, embed=self._embed)
        self.drainer = Drainer(cfg, store, outbox, connect=self._connect, on_applied=self._replayed)
        self.writes = WritePath(
            store,
            outbox,
            self.cache,
            self.live,
            store_ready=lambda: self._store_ready,
            on_queued=self.drainer.wakeup.set,
            on_stored=self._to_index,
            find=self.reads.find,
        )
        self.indexer = Indexer(cfg, store, self.embedder, self.live, self.writes)
        self.purger = Purger(cfg, store, self.live, self.writes)

    def _spawn(self, coro: Any, name: str) -> None:
        """Run a background loop inside a cancel scope of its own. anyio re-delivers a scope's cancellation at
        every await until the task ends, so `close` stops the loop even when one CancelledError is absorbed on
        the way (an inner `move_on_after` whose deadline expires at the moment of a plain `Task.cancel()`
        takes that cancellation as its own, and the loop would wait again, for ever)."""
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await coro

        self._tasks.append((asyncio.create_task(run(), name=name), scope))

    def _to_index(self, records: list[MemoryRecord]) -> None:
        if self.local_vectors:
            self.indexer.add(records)

    async def _replayed(self, bumps: dict[str, tuple[int, int]]) -> None:
        for ns, (_, new) in bumps.items():
            await self.cache.raise_to(version_key(ns), new)

    async def _warm(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.embedder.load)  # type: ignore[attr-defined]
        except Exception:
            log.exception("loading the embedding model failed")

    async def _connect(self) -> bool:
        if self._store_ready:
            return True
        try:
            await anyio.to_thread.run_sync(self.store.init)
            self._store_ready = True
        except StoreUnavailable as exc:
            log.warning("L3 store unavailable (writes go to the outbox): %s", exc)
        except StoreRejected as exc:  # its set-up refused (its retries spent): serve from the outbox, try later
            log.error("L3 store refused its set-up (writes go to the outbox; tried again later): %s", exc)
        return self._store_ready

    async def close(self) -> None:
        for _, scope in self._tasks:
            scope.cancel()
        for task, _ in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._started:
            await self.cache.close()
            await anyio.to_thread.run_sync(self.store.close)
            if self.outbox is not None:
                self.outbox.close()
        self._started = False
        self._store_ready = False

    async def _embed(self, texts: list[str]) -> np.ndarray:
        return await anyio.to_thread.run_sync(self.embedder.embed, texts)

    @property
    def embedder_name(self) -> str:
        return self.embedder.name if self.local_vectors else getattr(self.store, "embedder_name", self.store.name)

    # -- tools ------------------------------------------------------------------------

    async def store_memory(
        self,
        content: str,
        namespace: str = "default",
        metadata: dict | None = None,
        ttl_seconds: float | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"content": content, "metadata": metadata, "ttl_seconds": ttl_seconds}
        if key is not None:
            item["key"] = key
        out = await self.store_memories([item], namespace, _single=True)
        return out["items"][0]

    async def store_memories(
        self, memories: list[dict[str, Any]], namespace: str = "default", *, _single: bool = False
    ) -> dict[str, Any]:
        await self.start()
        self.check.namespace(namespace)
        items = self.check.items(memories, single=_single)
        return await self.writes.store_items(items, namespace)

    async def recall(
        self,
        query: str,
        namespace: str = "default",
        k: int = 5,
        filters: dict | None = None,
        min_score: float | None = None,
        *,
        mode: str = "hybrid",
        consistency: str = "eventual",
        use_cache: bool = True,
    ) -> Recall:
        await self.start()
        return await self.reads.recall(
            query, namespace, k, filters, min_score, mode=mode, consistency=consistency, use_cache=use_cache
        )

    async def recall_memory(
        self,
        query: str,
        namespace: str = "default",
        k: int = 5,
        filters: dict | None = None,
        min_score: float | None = None,
        *,
        mode: str = "hybrid",
        consistency: str = "eventual",
        use_cache: bool = True,
    ) -> list[dict[str, Any]]:
        out = await self.recall(
            query, namespace, k, filters, min_score, mode=mode, consistency=consistency, use_cache=use_cache
        )
        return out.hits

    async def get_memory(self, memory_id: str) -> dict[str, Any]:
        await self.start()
        return await self.reads.get(memory_id)

    async def list_memories(
        self, namespace: str = "default", limit: int = 50, cursor: str | None = None, filters: dict | None = None
    ) -> dict[str, Any]:
        await self.start()
        return await self.reads.list(namespace, limit, cursor, filters)

    async def update_memory(
        self, memory_id: str, content: str | None = None, metadata: dict | None = None
    ) -> dict[str, Any]:
        await self.start()
        if content is None and metadata is None:
            raise ToolError("give content and/or metadata to update")
        if content is not None:
            self.check.content(content)
        meta = self.check.metadata(metadata) if metadata is not None else None
        self.check.memory_id(memory_id)
        rec, changed = await self.writes.update(memory_id, content, meta)
        return {**view(rec), "reembedded": changed}

    async def delete_memory(self, memory_id: str) -> dict[str, Any]:
        await self.start()
        self.check.memory_id(memory_id)
        await self.writes.delete(memory_id)
        return {"id": memory_id, "deleted": True}

    async def delete_namespace(self, namespace: str) -> dict[str, Any]:
        await self.start()
        self.check.namespace(namespace)
        return {"namespace": namespace, "deleted": await self.writes.delete_namespace(namespace)}

    async def drain_outbox(self) -> int:
        await self.start()
        return await self.drainer.drain()

    async def purge_expired(self) -> int:
        await self.start()
        return await self.purger.purge()

    async def dead_letters(
        self, action: str = "list", seqs: list[int] | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """List, replay (queue again) or discard outbox entries L3 refused for good: of every namespace,
        or with `namespace` of that one alone (the seqs of others are left alone, as if absent)."""
        await self.start()
        assert self.outbox is not None
        if namespace is not None:
            self.check.namespace(namespace)
        if action not in DEAD_LETTER_ACTIONS:
            raise ToolError(f"action must be one of {list(DEAD_LETTER_ACTIONS)}, got {action!r}")
        if seqs is not None and (
            not isinstance(seqs, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seqs)
        ):
            raise ToolError("seqs must be a list of integers (the seq of each dead letter)")
        done = 0
        if action == "replay":
            done = await anyio.to_thread.run_sync(self.outbox.resurrect, seqs, namespace)
            self.drainer.wakeup.set()
        elif action == "discard":
            done = await anyio.to_thread.run_sync(self.outbox.discard, seqs, namespace)
        dead = await anyio.to_thread.run_sync(self.outbox.dead, 1000, namespace)
        return {
            "action": action,
            "namespace": namespace,
            "affected": done,
            "dead_letters": [
                {"seq": d["seq"], "op": d["op"].get("op"), "id": _op_id(d["op"]), "reason": d["reason"]} for d in dead
            ],
        }

    async def memory_stats(self, namespace: str | None = None) -> dict[str, Any]:
        """The tiers' figures: of every namespace, or with `namespace` of that one alone. A namespace's
        stats count nothing of the others (hits, misses, index lag, outbox, dead letters are its own; the
        counts that span namespaces, `namespaces_loaded`, `catch_ups` and `index_lag.embedded`, are left
        out), so a client whose namespaces the gateway scopes sees no other tenant's activity."""
        await self.start()
        assert self.outbox is not None
        outbox = self.outbox
        if namespace is not None:
            self.check.namespace(namespace)
            await self.live.current(namespace)
        l3_count: int | None
        if not await self._connect():
            l3_count = None
        else:
            try:
                l3_count = await anyio.to_thread.run_sync(self.store.count, namespace)
            except StoreUnavailable:
                l3_count = None
        indexes = self.live.indexes
        idxs = [indexes[namespace]] if namespace is not None else list(indexes.values())
        hits, misses = (
            (self.reads.hits, self.reads.misses)
            if namespace is None
            else tuple(self.reads.by_namespace.get(namespace, (0, 0)))
        )
        l1: dict[str, Any] = {
            "backend": self.cache.backend,
            "available": self.cache.available,
            "hits": hits,
            "misses": misses,
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
        }
        dead = await anyio.to_thread.run_sync(lambda: outbox.dead(20, namespace))
        dead_count = await anyio.to_thread.run_sync(outbox.dead_count, namespace)
        last_dead = await anyio.to_thread.run_sync(outbox.last_dead, namespace) if dead_count else None
        lag = self.indexer.lag(namespace) if self.local_vectors else {"pending": 0, "oldest_age_s": None}
        lag["unembedded_in_loaded_namespaces"] = sum(len(i.unembedded()) for i in idxs) if self.local_vectors else 0
        l2: dict[str, Any] = {
            "embedder": self.embedder_name,
            "dim": getattr(self.store, "embedding_dim", None) or self.embedder.dim,
            "indexed": sum(len(i) for i in idxs),
            "index_bytes": sum(i.nbytes() for i in idxs),
            "fusion": self.config.fusion,
            "index_lag": lag,
        }
        if namespace is None:
            l2 |= {"namespaces_loaded": len(indexes), "catch_ups": self.live.catch_ups}
        return {
            "namespace": namespace,
            "l1": l1,
            "l2": l2,
            "l3": {
                "backend": self.store.name,
                "available": l3_count is not None,
                "reachable": l3_count is not None,
                "count": l3_count,
                "outbox_pending": await anyio.to_thread.run_sync(outbox.pending, namespace),
                "outbox_oldest_age_s": await anyio.to_thread.run_sync(outbox.oldest_age, namespace),
                "outbox_last_error": self.drainer.last_error,
                "outbox_retry_in_s": max(0.0, round(self.drainer.not_before - time.monotonic(), 3)),
                "dead_letters": dead_count,
                "dead_letter_last_reason": last_dead["reason"] if last_dead else None,
                "dead_letter_samples": [
                    {"seq": d["seq"], "op": d["op"].get("op"), "id": _op_id(d["op"]), "reason": d["reason"]}
                    for d in dead
                ],
            },
            "problems": _problems(
                self.store.name, l3_count is not None, self.drainer.last_error, dead_count, last_dead
            ),
        }


def _problems(
    backend: str, reachable: bool, last_error: str | None, dead: int, last_dead: dict[str, Any] | None
) -> list[str]:
    """What an operator must look at (the gateway shows these on /health as this backend's reasons)."""
    problems = []
    if not reachable:
        problems.append(
            f"L3 ({backend}) is unreachable now; writes wait in the outbox" + (f": {last_error}" if last_error else "")
        )
    if dead:
        reason = last_dead["reason"] if last_dead else "unknown"
        problems.append(
            f"{dead} dead letter(s): writes L3 refused for good (newest: {reason}); replay or discard them with "
            "memory_dead_letters"
        )
    return problems


def _op_id(op: dict[str, Any]) -> str | None:
    if "record" in op and isinstance(op["record"], dict):
        return op["record"].get("id")
    return op.get("id") or op.get("namespace")
