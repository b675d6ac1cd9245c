"""L3's contract: what every durable store offers, the write operations it applies, its errors.

A store is the source of truth for memories *and* for their versions. Every namespace has a
version that L3 raises in the same transaction as any change to the namespace; every row
carries the version of its last change, and a deleted row leaves a tombstone with the version
of its deletion. That is what lets a replica catch up (`changes`) instead of trusting its own
index, and what lets every cached copy be checked against L3 (a copy stamped with an older
version is a miss). Implementations: `sqlite_store.SqliteStore` (the embedded default) and
`snowflake_store.SnowflakeStore`. Every method is synchronous and runs in a worker thread.

A store names itself by `identity`, a string equal for every replica over the same L3 and different
for different ones (no I/O): the Redis keys of the memory are scoped by it (cache.py).

A store says what it can do through attributes, and the service never asks which class it is:
- `computes_embeddings`: L3 embeds and ranks by meaning itself (Cortex); no local vectors.
- `cheap_version`: `version()` is a local-file read that never waits for a writer, so readers
  call it inline on every read; otherwise they poll it, and Redis carries the change signal.
- `dense_search(...)`: present only on stores that rank by meaning in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from servers.ai_memory.records import MemoryRecord

__all__ = [
    "Changes",
    "Op",
    "Store",
    "StoreRejected",
    "StoreUnavailable",
    "delete_namespace_op",
    "delete_op",
    "embed_op",
    "op_namespace",
    "op_record",
    "put_op",
    "serialise_op",
]


class StoreUnavailable(RuntimeError):
    """The durable store cannot be reached right now (network, breaker open, disk, lock): retry later."""


class StoreRejected(ValueError):
    """The store refused this operation for good (a constraint, a value it cannot hold): retrying won't help."""


# An operation as recorded in the outbox and replayed against a store.
Op = dict[str, Any]


@dataclass
class Changes:
    """What changed in one namespace after a version (or everything, for a snapshot)."""

    version: int
    records: list[MemoryRecord] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    full: bool = False  # a snapshot: ids not in `records` are gone


class Store(Protocol):
    name: str
    identity: str
    computes_embeddings: bool
    cheap_version: bool

    def init(self) -> None: ...
    def apply(self, ops: list[Op]) -> dict[str, tuple[int, int]]:
        """Apply ops in one transaction; returns {namespace: (version before, version after)}."""
        ...

    def version(self, namespace: str) -> int: ...
    def snapshot(self, namespace: str, now: float) -> Changes: ...
    def changes(self, namespace: str, since: int) -> Changes | None:
        """Rows and tombstones newer than `since`; None when tombstones that old were purged."""
        ...

    def get(self, memory_id: str) -> tuple[MemoryRecord | None, int]:
        """The record and its namespace's version, read together."""
        ...

    def unembedded(self, embedder: str, updated_before: float, limit: int) -> list[MemoryRecord]: ...
    def purge_expired(self, now: float) -> list[tuple[str, str]]: ...
    def count(self, namespace: str | None) -> int: ...
    def close(self) -> None: ...


def put_op(rec: MemoryRecord) -> Op:
    # The record object rides along in memory; `serialise_op` turns it into JSON for the outbox.
    return {"op": "put", "rec": rec}


def delete_op(memory_id: str, namespace: str) -> Op:
    return {"op": "delete", "id": memory_id, "namespace": namespace}


def delete_namespace_op(namespace: str) -> Op:
    return {"op": "delete_namespace", "namespace": namespace}


def embed_op(rec: MemoryRecord, vector: np.ndarray, embedder: str) -> Op:
    """Set the vector of `rec` in L3, only if its content is still the one that was embedded."""
    return {
        "op": "embed",
        "id": rec.id,
        "namespace": rec.namespace,
        "content_hash": rec.content_hash,
        "embedding": vector,
        "embedder": embedder,
    }


def serialise_op(op: Op) -> Op:
    if "rec" in op:
        return {"op": "put", "record": op["rec"].to_json(with_embedding=True)}
    if op["op"] == "embed" and isinstance(op["embedding"], np.ndarray):
        return {**op, "embedding": [float(x) for x in op["embedding"]]}
    return op


def op_record(op: Op) -> MemoryRecord:
    return op["rec"] if "rec" in op else MemoryRecord.from_json(op["record"])


def op_namespace(op: Op) -> str:
    if op["op"] == "put":
        return op_record(op).namespace
    return op["namespace"]


def op_vector(op: Op) -> np.ndarray:
    return np.asarray(op["embedding"], dtype=np.float32)
