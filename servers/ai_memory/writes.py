"""The write path: a write is acknowledged once it is durable, in L3 or in the fsync'd outbox.

Nothing slow sits in front of the acknowledgement: records are stored without vectors and
handed to the indexer (maintenance.py), which embeds them in batches behind the write. The
writer applies its change to its own index at once (keyword-findable immediately), then raises
the namespace's change signal in Redis, so every replica catches up on its next read.

Identity: without a `key`, a memory's id is derived from (namespace, content), so storing the
same content again is a no-op returning the first id. With a caller-chosen `key` (an upstream
record id, say), the id is derived from (namespace, key): storing again with the same key
updates that memory in place (same id, same created_at; re-embedded if the content changed).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio

from servers.ai_memory.cache import LocalLRUCache, RedisCache
from servers.ai_memory.coherence import LiveIndexes, version_key
from servers.ai_memory.outbox import Outbox
from servers.ai_memory.records import MemoryRecord, content_hash, derived_id, iso, now
from servers.ai_memory.store import (
    Op,
    Store,
    StoreRejected,
    StoreUnavailable,
    delete_namespace_op,
    delete_op,
    put_op,
)
from servers.ai_memory.validation import Item, bad

log = logging.getLogger(__name__)


def keyed_id(namespace: str, key: str) -> str:
    return "mem_" + hashlib.sha256(f"{namespace}\x00key\x00{key}".encode()).hexdigest()[:32]


def record_key(memory_id: str) -> str:
    return f"rec:{memory_id}"


class WritePath:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        cache: LocalLRUCache | RedisCache,
        live: LiveIndexes,
        *,
        store_ready: Callable[[], bool],
        on_queued: Callable[[], None],
        on_stored: Callable[[list[MemoryRecord]], None],
        find: Callable[[str], Awaitable[MemoryRecord | None]],
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.cache = cache
        self.live = live
        self._store_ready = store_ready
        self._on_queued = on_queued  # wakes the outbox drainer
        self._on_stored = on_stored  # hands new content to the indexer
        self._find = find

    async def durable(self, ops: list[Op]) -> dict[str, tuple[int, int]] | None:
        """Make ops durable: L3's version changes, or None when they went to the outbox. While the
        outbox holds anything, later writes queue behind it, so L3 sees every write in order."""
        if self._store_ready() and self.outbox.depth == 0:
            try:
                return await anyio.to_thread.run_sync(self.store.apply, ops)
            except StoreUnavailable as exc:
                log.warning("L3 write failed, queueing in the outbox: %s", exc)
            except StoreRejected as exc:
                raise bad(f"the memory store rejected this write: {exc}") from exc
        await anyio.to_thread.run_sync(self.outbox.append, ops)
        self._on_queued()
        return None

    async def signal(self, bumps: dict[str, tuple[int, int]] | None, ids: list[str] = ()) -> None:  # type: ignore[assignment]
        """Tell the other replicas (their next read catches up) and drop L1 copies (best effort:
        a copy left behind carries an older version and is never served)."""
        for ns, (_, new) in (bumps or {}).items():
            await self.cache.raise_to(version_key(ns), new)
        if ids:
            await self.cache.delete(*[record_key(i) for i in ids])

    # -- tools ------------------------------------------------------------------------------

    async def store_items(self, items: list[Item], namespace: str) -> dict[str, Any]:
        async with self.live.lock(namespace):
            idx = await self.live.current_locked(namespace)
            t = now()
            results: list[dict[str, Any]] = []
            new: dict[str, MemoryRecord] = {}
            for item in items:
                h = content_hash(item.content)
                expires = None if item.ttl is None else t + item.ttl
                if item.key is not None:
                    mid = keyed_id(namespace, item.key)
                    have = new.get(mid) or idx.get(mid)
                    if (
                        have is not None
                        and not have.expired(t)
                        and (have.content_hash, have.metadata)
                        == (
                            h,
                            item.metadata,
                        )
                        and item.ttl is None
                    ):
                        results.append(_stored(have, True))
                        continue
                    keep = have is not None and have.content_hash == h
                    rec = MemoryRecord(
                        id=mid,
                        namespace=namespace,
                        content=item.content,
                        content_hash=h,
                        metadata=item.metadata,
                        created_at=have.created_at if have is not None else t,
                        updated_at=t,
                        expires_at=expires,
                        embedding=idx.vector(mid) if keep else None,
                        embedder=have.embedder if keep and have is not None else None,
                    )
                else:
                    existing = next((r for r in new.values() if r.content_hash == h), None)
                    if existing is None:
                        eid = idx.hash_to_id.get(h)
                        existing = idx.get(eid) if eid else None
                    if existing is not None and not existing.expired(t):
                        results.append(_stored(existing, True))
                        continue
                    mid = derived_id(namespace, h)
                    taken = idx.get(mid)
                    if taken is not None and taken.content_hash != h:
                        mid = "mem_" + uuid.uuid4().hex  # the derived id belongs to an updated memory
                    rec = MemoryRecord(
                        id=mid,
                        namespace=namespace,
                        content=item.content,
                        content_hash=h,
                        metadata=item.metadata,
                        created_at=t,
                        updated_at=t,
                        expires_at=expires,
                    )
                new[rec.id] = rec
                results.append(_stored(rec, False))
            records = list(new.values())
            bumps = None
            if records:
                bumps = await self.durable([put_op(r) for r in records])
                self.live.apply_local(namespace, (bumps or {}).get(namespace), records=records)
        if records:
            await self.signal(bumps, [r.id for r in records])
            self._on_stored([r for r in records if r.embedding is None])
        return {
            "namespace": namespace,
            "ids": [r["id"] for r in results],
            "stored": len(records),
            "deduplicated": sum(1 for r in results if r["deduplicated"]),
            "items": results,
        }

    async def update(
        self, memory_id: str, content: str | None, metadata: dict[str, Any] | None
    ) -> tuple[MemoryRecord, bool]:
        rec = await self._find(memory_id)
        if rec is None or rec.expired():
            raise bad(f"unknown memory id {memory_id!r}")
        async with self.live.lock(rec.namespace):
            idx = await self.live.current_locked(rec.namespace)
            current = idx.get(memory_id) if rec.namespace in self.live.indexes else rec
            if current is None:
                raise bad(f"unknown memory id {memory_id!r}")
            changed = content is not None and content_hash(content) != current.content_hash
            new = replace(
                current,
                content=content if content is not None else current.content,
                content_hash=content_hash(content) if content is not None else current.content_hash,
                metadata=metadata if metadata is not None else current.metadata,
                updated_at=now(),
                embedding=None if changed else idx.vector(memory_id),
                embedder=None if changed else current.embedder,
            )
            bumps = await self.durable([put_op(new)])
            self.live.apply_local(rec.namespace, (bumps or {}).get(rec.namespace), records=[new])
        await self.signal(bumps, [memory_id])
        if new.embedding is None:
            self._on_stored([new])
        return new, changed

    async def delete(self, memory_id: str) -> None:
        rec = await self._find(memory_id)
        if rec is None:
            raise bad(f"unknown memory id {memory_id!r}")
        async with self.live.lock(rec.namespace):
            bumps = await self.durable([delete_op(memory_id, rec.namespace)])
            self.live.apply_local(rec.namespace, (bumps or {}).get(rec.namespace), deleted=[memory_id])
        await self.signal(bumps, [memory_id])

    async def delete_namespace(self, namespace: str) -> int:
        async with self.live.lock(namespace):
            idx = await self.live.current_locked(namespace)
            ids = list(idx.row_of)
            bumps = await self.durable([delete_namespace_op(namespace)])
            self.live.apply_local(namespace, (bumps or {}).get(namespace), cleared=True)
        await self.signal(bumps, ids)
        return len(ids)


def _stored(rec: MemoryRecord, dedup: bool) -> dict[str, Any]:
    return {"id": rec.id, "namespace": rec.namespace, "created_at": iso(rec.created_at), "deduplicated": dedup}
