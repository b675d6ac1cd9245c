"""L3: the durable source of truth.

`SqliteStore` is the embedded default (a WAL-mode file with synchronous=FULL, so a
committed write survives SIGKILL and power loss). `SnowflakeStore` talks to Snowflake with
snowflake-connector-python through a small connection pool, retries transient failures and
sits behind a pybreaker circuit breaker. Both have the same MEMORIES table and the same
methods; every method is synchronous and is run in a worker thread by the service.

A write that cannot reach the store raises `StoreUnavailable`; the service then puts it in
the durable outbox (outbox.py) and acknowledges it.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from servers.ai_memory import cortex_sql
from servers.ai_memory.records import MemoryRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["SnowflakeStore", "SqliteStore", "Store", "StoreUnavailable"]


class StoreUnavailable(RuntimeError):
    """The durable store cannot be reached right now (network, breaker open, disk)."""


# An operation as recorded in the outbox and replayed against a store.
Op = dict[str, Any]


class Store(Protocol):
    name: str
    computes_embeddings: bool

    def init(self) -> None: ...
    def apply(self, ops: list[Op]) -> None: ...
    def get(self, memory_id: str) -> MemoryRecord | None: ...
    def load_namespace(self, namespace: str, now: float) -> list[MemoryRecord]: ...
    def namespaces(self) -> list[str]: ...
    def purge_expired(self, now: float) -> list[tuple[str, str]]: ...
    def count(self, namespace: str | None) -> int: ...
    def close(self) -> None: ...


def put_op(rec: MemoryRecord) -> Op:
    # The record object rides along in memory; `serialise_op` turns it into JSON for the outbox.
    return {"op": "put", "rec": rec}


def serialise_op(op: Op) -> Op:
    if "rec" in op:
        return {"op": "put", "record": op["rec"].to_json(with_embedding=True)}
    return op


def op_record(op: Op) -> MemoryRecord:
    return op["rec"] if "rec" in op else MemoryRecord.from_json(op["record"])


def delete_op(memory_id: str) -> Op:
    return {"op": "delete", "id": memory_id}


def delete_namespace_op(namespace: str) -> Op:
    return {"op": "delete_namespace", "namespace": namespace}


# ---------------------------------------------------------------------------------------
# sqlite


SQLITE_SCHEMA = """
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
    EXPIRES_AT   REAL
);
CREATE INDEX IF NOT EXISTS MEMORIES_NS_HASH ON MEMORIES (NAMESPACE, CONTENT_HASH);
CREATE INDEX IF NOT EXISTS MEMORIES_EXPIRES ON MEMORIES (EXPIRES_AT) WHERE EXPIRES_AT IS NOT NULL;
"""


class SqliteStore:
    name = "sqlite"
    computes_embeddings = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def init(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SQLITE_SCHEMA)
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

    @staticmethod
    def _row(r: tuple) -> MemoryRecord:
        emb = None if r[5] is None else np.frombuffer(r[5], dtype=np.float32).copy()
        return MemoryRecord(
            id=r[0],
            namespace=r[1],
            content=r[2],
            content_hash=r[3],
            metadata=json.loads(r[4]),
            embedding=emb,
            embedder=r[6],
            created_at=r[7],
            updated_at=r[8],
            expires_at=r[9],
        )

    _COLS = "ID, NAMESPACE, CONTENT, CONTENT_HASH, METADATA, EMBEDDING, EMBEDDER, " + (
        "CREATED_AT, UPDATED_AT, EXPIRES_AT"
    )

    def apply(self, ops: list[Op]) -> None:
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for op in ops:
                    kind = op["op"]
                    if kind == "put":
                        r = op_record(op)
                        emb = None if r.embedding is None else r.embedding.astype(np.float32).tobytes()
                        db.execute(
                            f"INSERT INTO MEMORIES ({self._COLS}) VALUES (?,?,?,?,?,?,?,?,?,?) "
                            "ON CONFLICT(ID) DO UPDATE SET NAMESPACE=excluded.NAMESPACE,"
                            " CONTENT=excluded.CONTENT,"
                            " CONTENT_HASH=excluded.CONTENT_HASH, METADATA=excluded.METADATA,"
                            " EMBEDDING=excluded.EMBEDDING, EMBEDDER=excluded.EMBEDDER,"
                            " UPDATED_AT=excluded.UPDATED_AT, EXPIRES_AT=excluded.EXPIRES_AT",
                            (
                                r.id,
                                r.namespace,
                                r.content,
                                r.content_hash,
                                json.dumps(r.metadata),
                                emb,
                                r.embedder,
                                r.created_at,
                                r.updated_at,
                                r.expires_at,
                            ),
                        )
                    elif kind == "delete":
                        db.execute("DELETE FROM MEMORIES WHERE ID = ?", (op["id"],))
                    elif kind == "delete_namespace":
                        db.execute("DELETE FROM MEMORIES WHERE NAMESPACE = ?", (op["namespace"],))
                    else:
                        raise ValueError(f"unknown op {kind!r}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def get(self, memory_id: str) -> MemoryRecord | None:
        with self._db() as db:
            r = db.execute(f"SELECT {self._COLS} FROM MEMORIES WHERE ID = ?", (memory_id,)).fetchone()
        return None if r is None else self._row(r)

    def load_namespace(self, namespace: str, now: float) -> list[MemoryRecord]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {self._COLS} FROM MEMORIES WHERE NAMESPACE = ?"
                " AND (EXPIRES_AT IS NULL OR EXPIRES_AT > ?)"
                " ORDER BY CREATED_AT, ID",
                (namespace, now),
            ).fetchall()
        return [self._row(r) for r in rows]

    def namespaces(self) -> list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT NAMESPACE FROM MEMORIES").fetchall()]

    def purge_expired(self, now: float) -> list[tuple[str, str]]:
        with self._db() as db:
            rows = db.execute(
                "DELETE FROM MEMORIES WHERE EXPIRES_AT IS NOT NULL AND EXPIRES_AT <= ? RETURNING ID, NAMESPACE",
                (now,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def count(self, namespace: str | None) -> int:
        with self._db() as db:
            if namespace is None:
                return db.execute("SELECT COUNT(*) FROM MEMORIES").fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM MEMORIES WHERE NAMESPACE = ?", (namespace,)).fetchone()[0]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ---------------------------------------------------------------------------------------
# Snowflake


END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)  # EXPIRES_AT for "never" (see docs: NULL-free column)


def _ts(value: float | None) -> str:
    dt = END_OF_TIME if value is None else datetime.fromtimestamp(value, UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.year >= 9999:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


class ConnectionPool:
    """A tiny bounded pool: the Snowflake connector has none of its own."""

    def __init__(self, factory: Callable[[], Any], size: int) -> None:
        self._factory = factory
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._sem = threading.BoundedSemaphore(size)
        self.size = size
        self.created = 0

    @contextmanager
    def connection(self, timeout: float = 30.0) -> Iterator[Any]:
        if not self._sem.acquire(timeout=timeout):
            raise StoreUnavailable("snowflake pool exhausted")
        conn = None
        broken = False
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._factory()
                self.created += 1
            yield conn
        except BaseException:
            broken = True
            raise
        finally:
            if conn is not None:
                if broken:
                    try:
                        conn.close()
                    except Exception:
                        log.debug("closing a broken snowflake connection failed", exc_info=True)
                else:
                    self._idle.put(conn)
            self._sem.release()

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                conn.close()
            except Exception:
                log.debug("closing a snowflake connection failed", exc_info=True)


class SnowflakeStore:
    """MEMORIES on Snowflake. With `use_cortex` the EMBEDDING column is VECTOR(FLOAT, 768)
    filled by SNOWFLAKE.CORTEX.EMBED_TEXT_768 in SQL; otherwise it holds the local embedder's
    vector as an ARRAY (what the fakesnow emulator in the tests can run)."""

    name = "snowflake"

    def __init__(self, settings: Any, *, use_cortex: bool, retries: int = 3, breaker: Any = None) -> None:
        import pybreaker

        self.settings = settings
        self.use_cortex = use_cortex
        self.computes_embeddings = use_cortex
        self.retries = retries
        self.breaker = breaker or pybreaker.CircuitBreaker(
            fail_max=3, reset_timeout=10, exclude=[self._is_caller_error], name="snowflake"
        )
        self.pool = ConnectionPool(self._connect, settings.pool_size)

    @staticmethod
    def _is_caller_error(exc: BaseException) -> bool:
        from snowflake.connector import errors

        return isinstance(exc, errors.ProgrammingError) and not isinstance(exc, errors.OperationalError)

    def _connect(self) -> Any:
        import snowflake.connector

        return snowflake.connector.connect(**self.settings.connect_kwargs())

    def _transient(self, exc: BaseException) -> bool:
        from snowflake.connector import errors

        if isinstance(exc, errors.ProgrammingError) and not isinstance(exc, errors.OperationalError):
            return False
        return isinstance(exc, errors.Error | OSError | TimeoutError)

    def _run(self, fn: Callable[[Any], T]) -> T:
        import pybreaker

        def attempt() -> T:
            delay = 0.05
            for i in range(self.retries):
                try:
                    with self.pool.connection() as conn:
                        return fn(conn)
                except Exception as exc:
                    if not self._transient(exc) or i == self.retries - 1:
                        raise
                    time.sleep(delay)
                    delay *= 4
            raise AssertionError("unreachable")

        try:
            return self.breaker.call(attempt)
        except pybreaker.CircuitBreakerError as exc:
            raise StoreUnavailable(f"snowflake circuit open: {exc}") from exc
        except Exception as exc:
            if self._transient(exc):
                raise StoreUnavailable(f"snowflake unreachable: {exc}") from exc
            raise

    def init(self) -> None:
        s = self.settings

        def do(conn: Any) -> None:
            cur = conn.cursor()
            if s.database:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {s.database}")
                cur.execute(f"USE DATABASE {s.database}")
            if s.schema:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {s.schema}")
                cur.execute(f"USE SCHEMA {s.schema}")
            cur.execute(cortex_sql.create_table_sql(self.use_cortex))

        self._run(do)

    _SELECT = "ID, NAMESPACE, CONTENT, CONTENT_HASH, METADATA, {emb}, EMBEDDER, CREATED_AT, UPDATED_AT, EXPIRES_AT"

    def _select_cols(self) -> str:
        # Cortex vectors stay in Snowflake: ranking happens there (cortex_sql.dense_search_sql).
        return self._SELECT.format(emb="NULL" if self.use_cortex else "EMBEDDING")

    @staticmethod
    def _row(r: tuple) -> MemoryRecord:
        meta = r[4]
        meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
        emb = r[5]
        if isinstance(emb, str):
            emb = json.loads(emb)
        return MemoryRecord(
            id=r[0],
            namespace=r[1],
            content=r[2],
            content_hash=r[3],
            metadata=meta,
            embedding=None if emb is None else np.asarray(emb, dtype=np.float32),
            embedder=r[6],
            created_at=_epoch(r[7]) or 0.0,
            updated_at=_epoch(r[8]) or 0.0,
            expires_at=_epoch(r[9]),
        )

    def apply(self, ops: list[Op]) -> None:
        if not ops:
            return

        def do(conn: Any) -> None:
            cur = conn.cursor()
            # Group consecutive puts into one MERGE; keep order relative to deletes.
            i = 0
            while i < len(ops):
                if ops[i]["op"] == "put":
                    j = i
                    while j < len(ops) and ops[j]["op"] == "put" and j - i < 500:
                        j += 1
                    self._merge(cur, [op_record(o) for o in ops[i:j]])
                    i = j
                    continue
                op = ops[i]
                if op["op"] == "delete":
                    cur.execute("DELETE FROM MEMORIES WHERE ID = %s", (op["id"],))
                elif op["op"] == "delete_namespace":
                    cur.execute("DELETE FROM MEMORIES WHERE NAMESPACE = %s", (op["namespace"],))
                else:
                    raise ValueError(f"unknown op {op['op']!r}")
                i += 1

        self._run(do)

    def _merge(self, cur: Any, recs: list[MemoryRecord]) -> None:
        # Last write wins within one batch (MERGE refuses duplicate source keys).
        by_id = {r.id: r for r in recs}
        recs = list(by_id.values())
        params: list[Any] = []
        for r in recs:
            emb = None
            if not self.use_cortex and r.embedding is not None:
                emb = json.dumps([round(float(x), 7) for x in r.embedding])
            params += [
                r.id,
                r.namespace,
                r.content,
                r.content_hash,
                json.dumps(r.metadata),
                emb,
                r.embedder,
                _ts(r.created_at),
                _ts(r.updated_at),
                _ts(r.expires_at),
            ]
        cur.execute(cortex_sql.merge_sql(len(recs), self.use_cortex), params)

    def get(self, memory_id: str) -> MemoryRecord | None:
        def do(conn: Any) -> MemoryRecord | None:
            cur = conn.cursor()
            cur.execute(f"SELECT {self._select_cols()} FROM MEMORIES WHERE ID = %s", (memory_id,))
            r = cur.fetchone()
            return None if r is None else self._row(r)

        return self._run(do)

    def load_namespace(self, namespace: str, now: float) -> list[MemoryRecord]:
        def do(conn: Any) -> list[MemoryRecord]:
            cur = conn.cursor()
            cur.execute(
                f"SELECT {self._select_cols()} FROM MEMORIES WHERE NAMESPACE = %s"
                " AND EXPIRES_AT > %s::TIMESTAMP_NTZ ORDER BY CREATED_AT, ID",
                (namespace, _ts(now)),
            )
            return [self._row(r) for r in cur.fetchall()]

        return self._run(do)

    def dense_search(self, namespace: str, query: str, limit: int, now: float) -> list[tuple[str, float]]:
        """Cortex only: ids and cosine similarities ranked in Snowflake."""

        def do(conn: Any) -> list[tuple[str, float]]:
            cur = conn.cursor()
            cur.execute(
                cortex_sql.dense_search_sql(),
                {"query": query, "namespace": namespace, "now": _ts(now), "limit": int(limit)},
            )
            return [(r[0], float(r[1])) for r in cur.fetchall()]

        return self._run(do)

    def namespaces(self) -> list[str]:
        def do(conn: Any) -> list[str]:
            cur = conn.cursor()
            cur.execute("SELECT DISTINCT NAMESPACE FROM MEMORIES")
            return [r[0] for r in cur.fetchall()]

        return self._run(do)

    def purge_expired(self, now: float) -> list[tuple[str, str]]:
        def do(conn: Any) -> list[tuple[str, str]]:
            cur = conn.cursor()
            cur.execute("SELECT ID, NAMESPACE FROM MEMORIES WHERE EXPIRES_AT <= %s::TIMESTAMP_NTZ", (_ts(now),))
            gone = [(r[0], r[1]) for r in cur.fetchall()]
            if gone:
                cur.execute("DELETE FROM MEMORIES WHERE EXPIRES_AT <= %s::TIMESTAMP_NTZ", (_ts(now),))
            return gone

        return self._run(do)

    def count(self, namespace: str | None) -> int:
        def do(conn: Any) -> int:
            cur = conn.cursor()
            if namespace is None:
                cur.execute("SELECT COUNT(*) FROM MEMORIES")
            else:
                cur.execute("SELECT COUNT(*) FROM MEMORIES WHERE NAMESPACE = %s", (namespace,))
            return int(cur.fetchone()[0])

        return self._run(do)

    def close(self) -> None:
        self.pool.close()
