"""L2 kept in step with L3: every replica's per-namespace indexes, caught up by version.

A replica never trusts its index on its own. Before a read, `current(ns)` compares the index's
version with L3's: on a store with a cheap version (the embedded sqlite file, shared by every
replica on the data dir) it asks L3 on every read; otherwise it reads the Redis signal
(`ver:{ns}` under the store's prefix, cache.py; raised by the writer before it acknowledges) on
every read and asks L3 at least every `sync_interval` seconds. When L3 is ahead, `changes()` brings the rows and
tombstones since the index's version; when those tombstones were purged, the namespace is
reloaded. Writes this replica made are applied at once (`apply_local`), so its own reads
never wait. Pending outbox operations of this data dir are laid over whatever L3 says.

`stamp(ns)` is the version a cached copy must carry to be served (see reads.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import anyio
import numpy as np

from servers.ai_memory.cache import LocalLRUCache, RedisCache
from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.index import NamespaceIndex
from servers.ai_memory.outbox import Outbox
from servers.ai_memory.records import MemoryRecord, now
from servers.ai_memory.store import Changes, Store, StoreUnavailable, op_record, op_vector

log = logging.getLogger(__name__)


def version_key(namespace: str) -> str:
    return f"ver:{namespace}"


class LiveIndexes:
    def __init__(
        self,
        config: MemoryConfig,
        store: Store,
        cache: LocalLRUCache | RedisCache,
        outbox: Outbox,
        *,
        dim: int,
        vector_ok: Callable[[MemoryRecord], bool],
    ) -> None:
        self.config = config
        self.store = store
        self.cache = cache
        self.outbox = outbox
        self.dim = dim
        self.vector_ok = vector_ok  # does this L3 embedding fit the embedder in use?
        self.indexes: dict[str, NamespaceIndex] = {}
        self.partial: set[str] = set()  # loaded while L3 was unreachable
        self._locks: dict[str, asyncio.Lock] = {}
        self._checked: dict[str, float] = {}  # monotonic time of the last L3 check (polling stores)
        self.catch_ups = 0

    def lock(self, namespace: str) -> asyncio.Lock:
        lock = self._locks.get(namespace)
        if lock is None:
            lock = self._locks[namespace] = asyncio.Lock()
        return lock

    def _fresh(self, namespace: str) -> NamespaceIndex:
        return NamespaceIndex(namespace, self.dim, self.config.ann_min_vectors)

    # -- reads ---------------------------------------------------------------------------------

    async def current(self, namespace: str) -> NamespaceIndex:
        """The namespace's index, caught up with every write L3 acknowledged before this call
        (on a polling store without Redis: up to `sync_interval` older)."""
        idx = self.indexes.get(namespace)
        if idx is not None and namespace not in self.partial and not await self._behind(namespace, idx):
            return idx
        async with self.lock(namespace):
            return await self.current_locked(namespace)

    async def current_locked(self, namespace: str) -> NamespaceIndex:
        """As `current`, for a caller that holds the namespace lock (writers)."""
        idx = self.indexes.get(namespace)
        if idx is None or namespace in self.partial:
            return await self._load(namespace)
        if await self._behind(namespace, idx):
            await self._catch_up(namespace, idx)
        return self.indexes[namespace]

    async def catch_up(self, namespace: str) -> NamespaceIndex:
        """Ask L3 now, whatever the signal says (L3 named ids this index does not hold yet)."""
        async with self.lock(namespace):
            idx = self.indexes.get(namespace)
            if idx is None or namespace in self.partial:
                return await self._load(namespace)
            await self._catch_up(namespace, idx)
            return self.indexes[namespace]

    async def _behind(self, namespace: str, idx: NamespaceIndex) -> bool:
        if self.store.cheap_version:
            try:
                return self.store.version(namespace) > idx.version
            except StoreUnavailable:
                return False  # serve what this replica has
        due = time.monotonic() - self._checked.get(namespace, 0.0) >= self.config.sync_interval
        if due:
            return True
        signal = await self.cache.get_int(version_key(namespace))
        return signal is not None and signal > idx.version

    async def stamp(self, namespace: str) -> int | None:
        """L3's version of the namespace as this replica knows it now; None when unknown."""
        idx = self.indexes.get(namespace)
        if idx is not None:
            idx = await self.current(namespace)
            return None if namespace in self.partial else idx.version
        try:
            return await anyio.to_thread.run_sync(self.store.version, namespace)
        except StoreUnavailable:
            return None

    # -- loading and catching up --------------------------------------------------------------

    async def _load(self, namespace: str) -> NamespaceIndex:
        idx = self._fresh(namespace)
        try:
            snap = await anyio.to_thread.run_sync(self.store.snapshot, namespace, now())
            self._apply(idx, snap)
            self.partial.discard(namespace)
        except StoreUnavailable as exc:
            log.warning("loading namespace %r from L3 failed, serving the outbox only: %s", namespace, exc)
            self.partial.add(namespace)
        self._checked[namespace] = time.monotonic()
        await self._overlay(idx)
        self.indexes[namespace] = idx
        return idx

    async def _catch_up(self, namespace: str, idx: NamespaceIndex) -> None:
        try:
            ch = await anyio.to_thread.run_sync(self.store.changes, namespace, idx.version)
        except StoreUnavailable as exc:
            log.info("catching up %r from L3 failed, serving the local index: %s", namespace, exc)
            return
        self._checked[namespace] = time.monotonic()
        if ch is None:  # tombstones that old are gone: start again from a snapshot
            await self._load(namespace)
            return
        if ch.version <= idx.version and not ch.records and not ch.deleted:
            return
        self.catch_ups += 1
        self._apply(idx, ch)
        await self._overlay(idx)

    def _apply(self, idx: NamespaceIndex, ch: Changes) -> None:
        for gone in ch.deleted:
            idx.remove(gone)
        t = now()
        fresh = []
        for r in ch.records:
            have = idx.get(r.id)
            if have is not None and have.version >= r.version > 0:
                continue
            if r.embedding is not None and not self.vector_ok(r):
                r.embedding = None
            if r.embedding is None and have is not None and have.content_hash == r.content_hash:
                r.embedding = idx.vector(r.id)  # vector computed here, not yet written back
                r.embedder = have.embedder
            if not r.expired(t):
                fresh.append(r)
            elif have is not None:
                idx.remove(r.id)
        idx.add(fresh)
        idx.version = max(idx.version, ch.version)

    async def _overlay(self, idx: NamespaceIndex) -> None:
        """Lay this data dir's pending outbox operations for the namespace over the index."""
        if self.outbox.depth == 0:
            return
        for _, op in await anyio.to_thread.run_sync(self.outbox.peek, 1_000_000):
            kind = op.get("op")
            if kind == "put" and op["record"]["namespace"] == idx.namespace:
                idx.add([op_record(op)])
            elif kind == "delete" and op.get("namespace") == idx.namespace:
                idx.remove(op["id"])
            elif kind == "delete_namespace" and op["namespace"] == idx.namespace:
                for mid in list(idx.row_of):
                    idx.remove(mid)
            elif kind == "embed" and op["namespace"] == idx.namespace:
                have = idx.get(op["id"])
                if have is not None and have.content_hash == op["content_hash"]:
                    idx.add([have], op_vector(op)[None, :])

    # -- this replica's own writes ---------------------------------------------------------------

    def apply_local(
        self,
        namespace: str,
        bump: tuple[int, int] | None,
        *,
        records: list[MemoryRecord] = (),  # type: ignore[assignment]
        vectors: np.ndarray | None = None,
        deleted: list[str] = (),  # type: ignore[assignment]
        cleared: bool = False,
    ) -> None:
        """Apply a write this replica just made durable (`bump`: L3's version change, None when it
        went to the outbox). The index's version moves only when nothing else happened in between."""
        idx = self.indexes.get(namespace)
        if idx is None:
            return  # loaded from L3 (and the outbox) on first use
        if cleared:
            for mid in list(idx.row_of):
                idx.remove(mid)
        for mid in deleted:
            idx.remove(mid)
        if records:
            if bump is not None:
                for r in records:
                    r.version = bump[1]
            idx.add(list(records), vectors)
        if bump is not None and idx.version == bump[0]:
            idx.version = bump[1]
