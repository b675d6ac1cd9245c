"""L3, embedded: one sqlite file in WAL mode with synchronous=FULL, so a committed write
survives SIGKILL and power loss, and several processes on one host (replicas over one data
dir) can share it: sqlite serialises their writers and every reader sees committed state.

Versions (see store.py): NAMESPACES holds each namespace's version and the oldest version
catch-up can still start from (`HORIZON`, raised when old tombstones are purged); MEMORIES
rows carry `VERSION`; TOMBSTONES keeps deleted ids for `tombstone_retention` seconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from servers.ai_memory.records import MemoryRecord, now
from servers.ai_memory.store import Changes, Op, StoreRejected, StoreUnavailable, op_record, op_vector

SCHEMA = """
CREATE TABLE IF NOT EXISTS MEMORIES (
    ID           TEXT PRIMARY KEY,
    NAMESPACE    TEXT NOT NULL,
    CONTENT      TEXT NOT NULL,
    CONTENT_HASH TEXT NOT NULL,
    METADATA     TEXT NOT NULL DEFAULT '{}',
    EMBEDDING    BLOB,
    EMBEDDER     TEXT,
    CREATED_AT   REAL NOT NULL,
    UPDATED_AT   REAL NOT NULL,
    EXPIRES_AT   REAL,
    VERSION      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS MEMORIES_NS_HASH ON MEMORIES (NAMESPACE, CONTENT_HASH);
CREATE INDEX IF NOT EXISTS MEMORIES_EXPIRES ON MEMORIES (EXPIRES_AT) WHERE EXPIRES_AT IS NOT NULL;
CREATE TABLE IF NOT EXISTS NAMESPACES (
    NAMESPACE TEXT PRIMARY KEY,
    VERSION   INTEGER NOT NULL,
    HORIZON   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS TOMBSTONES (
    ID         TEXT PRIMARY KEY,
    NAMESPACE  TEXT NOT NULL,
    VERSION    INTEGER NOT NULL,
    DELETED_AT REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS TOMBSTONES_NS ON TOMBSTONES (NAMESPACE, VERSION);
"""
# created after the VERSION column exists (an older file gains it by ALTER TABLE first)
VERSION_INDEX = "CREATE INDEX IF NOT EXISTS MEMORIES_NS_VERSION ON MEMORIES (NAMESPACE, VERSION)"

COLS = (
    "ID, NAMESPACE, CONTENT, CONTENT_HASH, METADATA, EMBEDDING, EMBEDDER, CREATED_AT, UPDATED_AT, EXPIRES_AT, VERSION"
)


def _row(r: tuple) -> MemoryRecord:
    emb = None if r[5] is None else np.frombuffer(r[5], dtype=np.float32).copy()
    return MemoryRecord(
        id=r[0],
        namespace=r[1],
        content=r[2],
        content_hash=r[3],
        metadata=json.loads(r[4]),
        embedding=emb,
        embedder=r[6] if emb is not None else None,
        created_at=r[7],
        updated_at=r[8],
        expires_at=r[9],
        version=r[10],
    )


class SqliteStore:
    name = "sqlite"
    computes_embeddings = False
    cheap_version = True

    def __init__(self, path: Path, *, busy_timeout: float = 10.0, tombstone_retention: float = 7 * 86400) -> None:
        self.path = path
        self.identity = f"sqlite:{path.resolve()}"  # every process on this file, however it was named
        self.busy_timeout = busy_timeout
        self.tombstone_retention = tombstone_retention
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._versions: sqlite3.Connection | None = None  # for `version()` alone, on the caller's thread

    def init(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=self.busy_timeout)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            cols = {r[1] for r in conn.execute("PRAGMA table_info(MEMORIES)")}
            if "VERSION" not in cols:  # a file from before versions
                conn.execute("ALTER TABLE MEMORIES ADD COLUMN VERSION INTEGER NOT NULL DEFAULT 0")
            conn.execute(VERSION_INDEX)
            # a WAL reader never waits for the writer: cheap enough to ask on every read, inline
            self._versions = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=1)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        self._conn = conn

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if self._conn is None:
            raise StoreUnavailable("sqlite store is not open")
        with self._lock:
            try:
                yield self._conn
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc
            except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError) as exc:
                raise StoreRejected(f"sqlite rejected the write: {exc}") from exc

    @contextmanager
    def _txn(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        with self._db() as db:
            db.execute(f"BEGIN {mode}")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- writes ---------------------------------------------------------------------------

    def apply(self, ops: list[Op]) -> dict[str, tuple[int, int]]:
        if not ops:
            return {}
        with self._txn() as db:
            bumped: dict[str, tuple[int, int]] = {}

            def version(ns: str) -> int:
                if ns not in bumped:
                    row = db.execute("SELECT VERSION FROM NAMESPACES WHERE NAMESPACE = ?", (ns,)).fetchone()
                    old = row[0] if row else 0
                    bumped[ns] = (old, old + 1)
                return bumped[ns][1]

            t = now()
            for op in ops:
                kind = op.get("op")
                if kind == "put":
                    r = op_record(op)
                    emb = None if r.embedding is None else r.embedding.astype(np.float32).tobytes()
                    db.execute(
                        f"INSERT INTO MEMORIES ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                        "ON CONFLICT(ID) DO UPDATE SET NAMESPACE=excluded.NAMESPACE, CONTENT=excluded.CONTENT,"
                        " CONTENT_HASH=excluded.CONTENT_HASH, METADATA=excluded.METADATA,"
                        " EMBEDDING=excluded.EMBEDDING, EMBEDDER=excluded.EMBEDDER,"
                        " UPDATED_AT=excluded.UPDATED_AT, EXPIRES_AT=excluded.EXPIRES_AT, VERSION=excluded.VERSION",
                        (r.id, r.namespace, r.content, r.content_hash, json.dumps(r.metadata), emb,
                         r.embedder if emb is not None else None, r.created_at, r.updated_at, r.expires_at,
                         version(r.namespace)),
                    )  # fmt: skip
                    db.execute("DELETE FROM TOMBSTONES WHERE ID = ?", (r.id,))
                elif kind == "delete":
                    row = db.execute("SELECT NAMESPACE FROM MEMORIES WHERE ID = ?", (op["id"],)).fetchone()
                    if row is not None:
                        self._tombstone(db, "ID = ?", (op["id"],), version(row[0]), t)
                elif kind == "delete_namespace":
                    self._tombstone(db, "NAMESPACE = ?", (op["namespace"],), version(op["namespace"]), t)
                elif kind == "embed":
                    db.execute(
                        "UPDATE MEMORIES SET EMBEDDING = ?, EMBEDDER = ?, VERSION = ?"
                        " WHERE ID = ? AND CONTENT_HASH = ?",
                        (op_vector(op).tobytes(), op["embedder"], version(op["namespace"]), op["id"],
                         op["content_hash"]),
                    )  # fmt: skip
                else:
                    raise StoreRejected(f"unknown operation {kind!r}")
            db.executemany(
                "INSERT INTO NAMESPACES (NAMESPACE, VERSION) VALUES (?, ?)"
                " ON CONFLICT(NAMESPACE) DO UPDATE SET VERSION = excluded.VERSION",
                [(ns, new) for ns, (_, new) in bumped.items()],
            )
        return bumped

    @staticmethod
    def _tombstone(db: sqlite3.Connection, where: str, args: tuple, version: int, t: float) -> None:
        db.execute(
            "INSERT OR REPLACE INTO TOMBSTONES (ID, NAMESPACE, VERSION, DELETED_AT)"
            f" SELECT ID, NAMESPACE, ?, ? FROM MEMORIES WHERE {where}",
            (version, t, *args),
        )
        db.execute(f"DELETE FROM MEMORIES WHERE {where}", args)

    def purge_expired(self, now: float) -> list[tuple[str, str]]:
        """Delete expired rows (leaving tombstones) and tombstones past their retention."""
        with self._txn() as db:
            gone = db.execute(
                "SELECT ID, NAMESPACE FROM MEMORIES WHERE EXPIRES_AT IS NOT NULL AND EXPIRES_AT <= ?", (now,)
            ).fetchall()
            for ns in {ns for _, ns in gone}:
                row = db.execute("SELECT VERSION FROM NAMESPACES WHERE NAMESPACE = ?", (ns,)).fetchone()
                v = (row[0] if row else 0) + 1
                self._tombstone(db, "NAMESPACE = ? AND EXPIRES_AT IS NOT NULL AND EXPIRES_AT <= ?", (ns, now), v, now)
                db.execute(
                    "INSERT INTO NAMESPACES (NAMESPACE, VERSION) VALUES (?, ?)"
                    " ON CONFLICT(NAMESPACE) DO UPDATE SET VERSION = excluded.VERSION",
                    (ns, v),
                )
            cutoff = now - self.tombstone_retention
            db.execute(
                "UPDATE NAMESPACES SET HORIZON = MAX(HORIZON, (SELECT MAX(VERSION) FROM TOMBSTONES t"
                " WHERE t.NAMESPACE = NAMESPACES.NAMESPACE AND t.DELETED_AT < ?))"
                " WHERE EXISTS (SELECT 1 FROM TOMBSTONES t WHERE t.NAMESPACE = NAMESPACES.NAMESPACE"
                " AND t.DELETED_AT < ?)",
                (cutoff, cutoff),
            )
            db.execute("DELETE FROM TOMBSTONES WHERE DELETED_AT < ?", (cutoff,))
        return [(r[0], r[1]) for r in gone]

    # -- reads ----------------------------------------------------------------------------

    def version(self, namespace: str) -> int:
        """Called inline by the event loop (`cheap_version`), on its own connection."""
        if self._versions is None:
            raise StoreUnavailable("sqlite store is not open")
        try:
            row = self._versions.execute("SELECT VERSION FROM NAMESPACES WHERE NAMESPACE = ?", (namespace,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        return row[0] if row else 0

    def snapshot(self, namespace: str, now: float) -> Changes:
        with self._txn("DEFERRED") as db:
            row = db.execute("SELECT VERSION FROM NAMESPACES WHERE NAMESPACE = ?", (namespace,)).fetchone()
            rows = db.execute(
                f"SELECT {COLS} FROM MEMORIES WHERE NAMESPACE = ? AND (EXPIRES_AT IS NULL OR EXPIRES_AT > ?)"
                " ORDER BY CREATED_AT, ID",
                (namespace, now),
            ).fetchall()
        return Changes(row[0] if row else 0, [_row(r) for r in rows], full=True)

    def changes(self, namespace: str, since: int) -> Changes | None:
        with self._txn("DEFERRED") as db:
            row = db.execute("SELECT VERSION, HORIZON FROM NAMESPACES WHERE NAMESPACE = ?", (namespace,)).fetchone()
            version, horizon = row if row else (0, 0)
            if since < horizon:
                return None
            rows = db.execute(
                f"SELECT {COLS} FROM MEMORIES WHERE NAMESPACE = ? AND VERSION > ? ORDER BY CREATED_AT, ID",
                (namespace, since),
            ).fetchall()
            gone = db.execute(
                "SELECT ID FROM TOMBSTONES WHERE NAMESPACE = ? AND VERSION > ?", (namespace, since)
            ).fetchall()
        return Changes(version, [_row(r) for r in rows], [g[0] for g in gone])

    def get(self, memory_id: str) -> tuple[MemoryRecord | None, int]:
        with self._txn("DEFERRED") as db:
            r = db.execute(f"SELECT {COLS} FROM MEMORIES WHERE ID = ?", (memory_id,)).fetchone()
            if r is None:
                return None, 0
            v = db.execute("SELECT VERSION FROM NAMESPACES WHERE NAMESPACE = ?", (r[1],)).fetchone()
        return _row(r), v[0] if v else 0

    def unembedded(self, embedder: str, updated_before: float, limit: int) -> list[MemoryRecord]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {COLS} FROM MEMORIES WHERE (EMBEDDING IS NULL OR EMBEDDER IS NOT ?) AND UPDATED_AT <= ?"
                " ORDER BY UPDATED_AT LIMIT ?",
                (embedder, updated_before, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    def count(self, namespace: str | None) -> int:
        with self._db() as db:
            if namespace is None:
                return db.execute("SELECT COUNT(*) FROM MEMORIES").fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM MEMORIES WHERE NAMESPACE = ?", (namespace,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:  # not while a worker thread is inside a statement
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._versions is not None:
                self._versions.close()
                self._versions = None
