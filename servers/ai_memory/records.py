"""The memory record and helpers shared by every tier."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def derived_id(namespace: str, chash: str) -> str:
    """Deterministic id for (namespace, content): a retried store lands on the same row."""
    return "mem_" + hashlib.sha256(f"{namespace}\x00{chash}".encode()).hexdigest()[:32]


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class MemoryRecord:
    id: str
    namespace: str
    content: str
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None
    embedding: np.ndarray | None = None
    embedder: str | None = None
    version: int = 0  # the namespace version L3 gave this state of the record (0: not in L3 yet)

    def expired(self, at: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now() if at is None else at)

    def without_embedding(self) -> MemoryRecord:
        return replace(self, embedding=None)

    # JSON form used by the L1 cache and the outbox.
    def to_json(self, with_embedding: bool = False) -> dict[str, Any]:
        d = {
            "id": self.id,
            "namespace": self.namespace,
            "content": self.content,
            "content_hash": self.content_hash,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "embedder": self.embedder,
            "version": self.version,
        }
        if with_embedding and self.embedding is not None:
            d["embedding"] = [float(x) for x in self.embedding]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MemoryRecord:
        emb = d.get("embedding")
        return cls(
            id=d["id"],
            namespace=d["namespace"],
            content=d["content"],
            content_hash=d["content_hash"],
            metadata=d.get("metadata") or {},
            created_at=float(d["created_at"]),
            updated_at=float(d.get("updated_at") or d["created_at"]),
            expires_at=None if d.get("expires_at") is None else float(d["expires_at"]),
            embedding=None if emb is None else np.asarray(emb, dtype=np.float32),
            embedder=d.get("embedder"),
            version=int(d.get("version") or 0),
        )
