"""The background loops: outbox replay, embedding behind the write, TTL purge.

`Drainer` replays the outbox into L3 in order and in batches. A batch L3 refuses for good is
retried one operation at a time, and the operation it still refuses goes to the dead-letter
list with the reason, so it never holds up the writes behind it; when L3 is unreachable the
drainer backs off exponentially (`outbox_drain_interval` doubling up to `outbox_max_backoff`).

`Indexer` embeds acknowledged memories in batches and writes the vectors back through the
write path (to L3, or to the outbox when L3 is away), so every replica picks them up. At start
(page after page, until none is left) and every `orphan_interval` seconds, it also adopts
memories L3 holds without a vector for the embedder in use (a replica died mid-batch, or the
model changed).

`Purger` deletes expired memories from L3 (which leaves tombstones, so replicas drop them too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import numpy as np

from embedding.embedder import Embedder
from servers.ai_memory.coherence import LiveIndexes, version_key
from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.outbox import Outbox
from servers.ai_memory.records import MemoryRecord, now
from servers.ai_memory.store import Store, StoreRejected, StoreUnavailable, embed_op
from servers.ai_memory.writes import WritePath

log = logging.getLogger(__name__)

PERMANENT = (StoreRejected, KeyError, TypeError, ValueError)  # replaying the same op fails the same way


class Drainer:
    def __init__(
        self,
        config: MemoryConfig,
        store: Store,
        outbox: Outbox,
        *,
        connect: Callable[[], Awaitable[bool]],
        on_applied: Callable[[dict[str, tuple[int, int]]], Awaitable[None]],
    ) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self._connect = connect
        self._on_applied = on_applied
        self.wakeup = asyncio.Event()
        self.delay = 0.0
        self.not_before = 0.0  # monotonic: no attempt before this (backoff)
        self.last_error: str | None = None
        self.dead_lettered = 0

    async def drain(self) -> int:
        """Replay what the outbox holds, oldest first. Returns how many operations L3 took."""
        if not await self._connect():
            self._failed("L3 is unreachable")
            return 0
        applied = 0
        with self.outbox.draining() as mine:
            if not mine:
                return 0  # another process on this data dir is replaying
            while True:
                batch = await anyio.to_thread.run_sync(self.outbox.peek, self.config.outbox_batch)
                if not batch:
                    break
                try:
                    bumps = await anyio.to_thread.run_sync(self.store.apply, [op for _, op in batch])
                except StoreUnavailable as exc:
                    self._failed(str(exc))
                    return applied
                except PERMANENT:
                    n = await self._one_by_one(batch)
                    if n < 0:
                        return applied
                    applied += n
                    continue
                await anyio.to_thread.run_sync(self.outbox.remove_through, batch[-1][0])
                applied += len(batch)
                await self._on_applied(bumps)
        self.delay, self.not_before, self.last_error = 0.0, 0.0, None
        return applied

    async def _one_by_one(self, batch: list[tuple[int, dict[str, Any]]]) -> int:
        """Apply a refused batch op by op; bury what L3 still refuses. -1 when L3 went away."""
        applied = 0
        for seq, op in batch:
            try:
                bumps = await anyio.to_thread.run_sync(self.store.apply, [op])
            except StoreUnavailable as exc:
                self._failed(str(exc))
                return -1
            except PERMANENT as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.error("L3 refused outbox entry %d for good, moved to the dead-letter list: %s", seq, reason)
                await anyio.to_thread.run_sync(self.outbox.bury, seq, reason)
                self.dead_lettered += 1
                continue
            await anyio.to_thread.run_sync(self.outbox.remove_through, seq)
            applied += 1
            await self._on_applied(bumps)
        return applied

    def _failed(self, error: str) -> None:
        self.last_error = error
        self.delay = min(self.config.outbox_max_backoff, max(self.config.outbox_drain_interval, self.delay * 2))
        self.not_before = time.monotonic() + self.delay
        log.info("outbox replay paused for %.1fs: %s", self.delay, error)

    async def run(self) -> None:
        while True:
            try:
                with anyio.move_on_after(self.config.outbox_drain_interval):
                    await self.wakeup.wait()
                self.wakeup.clear()
                wait = self.not_before - time.monotonic()
                if wait > 0:
                    await anyio.sleep(wait)
                if self.outbox.depth:
                    await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox replay failed")
                await anyio.sleep(self.config.outbox_drain_interval)


class Indexer:
    def __init__(
        self,
        config: MemoryConfig,
        store: Store,
        embedder: Embedder,
        live: LiveIndexes,
        writes: WritePath,
    ) -> None:
        self.config = config
        self.store = store
        self.embedder = embedder
        self.live = live
        self.writes = writes
        self.pending: dict[str, MemoryRecord] = {}  # insertion order = embedding order
        self.wakeup = asyncio.Event()
        self.embedded = 0
        self.busy = 0.0  # seconds spent embedding (the embedding rate is embedded / busy)

    def add(self, records: list[MemoryRecord]) -> None:
        for r in records:
            self.pending.pop(r.id, None)
            self.pending[r.id] = r
        if records:
            self.wakeup.set()

    def lag(self, namespace: str | None = None) -> dict[str, Any]:
        """What waits to be embedded, and the embedder's rate; for one namespace, that namespace's memories
        only (no count of the others': `embedded` is left out)."""
        waiting = [r for r in self.pending.values() if namespace is None or r.namespace == namespace]
        oldest = min((r.updated_at for r in waiting), default=None)
        lag: dict[str, Any] = {
            "pending": len(waiting),
            "oldest_age_s": None if oldest is None else round(max(0.0, now() - oldest), 3),
            "embedding_rate_per_s": round(self.embedded / self.busy, 1) if self.busy else None,
        }
        if namespace is None:
            lag["embedded"] = self.embedded
        return lag

    async def adopt_orphans(self, updated_before: float, seen: set[str]) -> bool:
        """Queue up to a page (8 batches) of L3's rows without a vector, except those in `seen`
        (adopted earlier in this scan: their vectors may still be on the way, in the outbox).
        True when the page was full and brought new rows: more may be waiting, and the caller
        asks again once the queue is empty."""
        page = self.config.embed_batch * 8
        try:
            found = await anyio.to_thread.run_sync(self.store.unembedded, self.embedder.name, updated_before, page)
        except StoreUnavailable:
            return False
        fresh = [r for r in found if r.id not in self.pending and r.id not in seen]
        seen.update(r.id for r in fresh)
        self.add(fresh)
        return len(found) >= page and bool(fresh)

    async def step(self) -> int:
        """Embed one batch from the queue; returns its size."""
        batch = list(self.pending.values())[: self.config.embed_batch]
        if not batch:
            return 0
        started = time.perf_counter()
        vecs = await anyio.to_thread.run_sync(self.embedder.embed, [r.content for r in batch])
        self.busy += time.perf_counter() - started
        by_ns: dict[str, list[int]] = {}
        for i, r in enumerate(batch):
            by_ns.setdefault(r.namespace, []).append(i)
        for ns, rows in by_ns.items():
            await self._write_back(ns, [batch[i] for i in rows], vecs[rows])
        for r in batch:
            if self.pending.get(r.id) is r:
                del self.pending[r.id]
        self.embedded += len(batch)
        return len(batch)

    async def _write_back(self, namespace: str, recs: list[MemoryRecord], vecs: np.ndarray) -> None:
        name = self.embedder.name
        async with self.live.lock(namespace):
            bumps = await self.writes.durable([embed_op(r, v, name) for r, v in zip(recs, vecs, strict=True)])
            idx = self.live.indexes.get(namespace)
            if idx is not None:
                keep = [
                    (have, v)
                    for r, v in zip(recs, vecs, strict=True)
                    if (have := idx.get(r.id)) is not None and have.content_hash == r.content_hash
                ]
                for have, _ in keep:
                    have.embedder = name
                if keep:
                    self.live.apply_local(
                        namespace,
                        (bumps or {}).get(namespace),
                        records=[h for h, _ in keep],
                        vectors=np.stack([v for _, v in keep]),
                    )
                elif bumps and namespace in bumps and idx.version == bumps[namespace][0]:
                    idx.version = bumps[namespace][1]
        await self.writes.signal(bumps)

    async def run(self) -> None:
        # a scan: rows last written before `cutoff` (at start every row; later, rows old enough
        # that no live writer is still embedding them), page after page until none is left
        cutoff, seen = now(), set[str]()
        more = await self.adopt_orphans(cutoff, seen)
        last_scan = time.monotonic()
        while True:
            try:
                if not self.pending and more:  # a backlog bigger than a page: the next page at once
                    more = await self.adopt_orphans(cutoff, seen)
                if not self.pending:
                    with anyio.move_on_after(self.config.orphan_interval):
                        await self.wakeup.wait()
                    self.wakeup.clear()
                if time.monotonic() - last_scan >= self.config.orphan_interval:
                    last_scan = time.monotonic()
                    cutoff, seen = now() - self.config.orphan_interval, set()
                    more = await self.adopt_orphans(cutoff, seen)
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("embedding a batch failed; retrying")
                await anyio.sleep(1.0)


class Purger:
    def __init__(self, config: MemoryConfig, store: Store, live: LiveIndexes, writes: WritePath) -> None:
        self.config = config
        self.store = store
        self.live = live
        self.writes = writes

    async def purge(self) -> int:
        """Delete expired memories from L3 and drop them from the indexes."""
        t = now()
        gone: dict[str, set[str]] = {}
        try:
            for mid, ns in await anyio.to_thread.run_sync(self.store.purge_expired, t):
                gone.setdefault(ns, set()).add(mid)
        except StoreUnavailable as exc:
            log.info("purge skipped, L3 unavailable: %s", exc)
        for ns, idx in list(self.live.indexes.items()):
            gone.setdefault(ns, set()).update(idx.expired_ids(t))
        for ns, ids in gone.items():
            idx = self.live.indexes.get(ns)
            if idx is not None:
                for mid in ids:
                    idx.remove(mid)
            if ids:
                try:
                    v = await anyio.to_thread.run_sync(self.store.version, ns)
                    await self.writes.cache.raise_to(version_key(ns), v)
                except StoreUnavailable:
                    pass
        return sum(len(v) for v in gone.values())

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.config.purge_interval)
            try:
                await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("purging expired memories failed")
