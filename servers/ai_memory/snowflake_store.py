"""L3 on Snowflake, through snowflake-connector-python: a small connection pool, retries of
transient failures, a pybreaker circuit breaker, and the versioned contract of store.py
(MEMORY_NAMESPACES holds each namespace's version, MEMORY_TOMBSTONES the deleted ids).

With Cortex (`cortex` set), Snowflake embeds (`AI_EMBED` by default) as rows are merged and ranks
recall candidates itself, with the metadata filter pushed into the WHERE clause; the vectors never
leave Snowflake. Without it, EMBEDDING is an ARRAY holding the local embedder's vectors. Every
method is synchronous and runs in a worker thread. A caller error in SQL (a value Snowflake
refuses) raises `StoreRejected`; anything network- or availability-shaped `StoreUnavailable`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from servers.ai_memory import cortex_sql
from servers.ai_memory.cortex_sql import Cortex, FilterSQL, chunks, embedding_json
from servers.ai_memory.records import MemoryRecord, now
from servers.ai_memory.store import Changes, Op, StoreRejected, StoreUnavailable, op_record, op_vector

log = logging.getLogger(__name__)
T = TypeVar("T")

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


def _identifier(name: str | None) -> str:
    """An identifier as Snowflake resolves it: unquoted ones are case-insensitive (stored upper case)."""
    if not name:
        return ""
    return name if name.startswith('"') else name.upper()


def store_identity(settings: Any) -> str:
    """account/database/schema/table: the same for every replica on this table, whatever host it connects
    through (a private link or a proxy reaches the same account)."""
    db, schema = _identifier(settings.database), _identifier(settings.schema)
    return f"snowflake:{settings.account.lower()}/{db}/{schema}/MEMORIES"


SETUP_RETRY_S = 10.0


class SnowflakeStore:
    name = "snowflake"
    cheap_version = False  # a round trip to a warehouse: polled, with Redis carrying the signal

    def __init__(
        self,
        settings: Any,
        *,
        cortex: Cortex | None = None,
        retries: int = 3,
        breaker: Any = None,
        tombstone_retention: float = 7 * 86400,
    ) -> None:
        import pybreaker

        self.settings = settings
        self.identity = store_identity(settings)
        self.cortex = cortex
        self.computes_embeddings = cortex is not None
        if cortex is not None:
            self.embedder_name = f"cortex:{cortex.model}"
            self.embedding_dim = cortex.dim
        else:
            self.dense_search = None  # type: ignore[assignment]  # no ranking by meaning in SQL
        self.retries = retries
        self.tombstone_retention = tombstone_retention
        self.breaker = breaker or pybreaker.CircuitBreaker(
            fail_max=3, reset_timeout=10, exclude=[self._is_caller_error], name="snowflake"
        )
        self.pool = ConnectionPool(self._connect, settings.pool_size)
        # A refused set-up (a role without CREATE TABLE, say) makes every other call "unavailable", so
        # writes go to the outbox and reads to the index (not a refusal of the caller's input), and the
        # set-up is tried again at most every SETUP_RETRY_S seconds on the way.
        self._set_up = False
        self._set_up_after = 0.0
        self._set_up_error = ""

    @staticmethod
    def _is_caller_error(exc: BaseException) -> bool:
        from snowflake.connector import errors

        return isinstance(exc, StoreRejected) or (
            isinstance(exc, errors.ProgrammingError) and not isinstance(exc, errors.OperationalError)
        )

    def _connect(self) -> Any:
        import snowflake.connector

        return snowflake.connector.connect(**self.settings.connect_kwargs())

    def _transient(self, exc: BaseException) -> bool:
        from snowflake.connector import errors

        if self._is_caller_error(exc):
            return False
        return isinstance(exc, errors.Error | OSError | TimeoutError)

    def _run(self, fn: Callable[[Any], T], *, transaction: bool = False, set_up: bool = False) -> T:
        import pybreaker

        if not set_up and not self._set_up:
            self._set_up_again()

        def once(conn: Any) -> T:
            if not transaction:
                return fn(conn)
            cur = conn.cursor()
            cur.execute("BEGIN")
            try:
                out = fn(conn)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            return out

        def attempt() -> T:
            delay = 0.05
            for i in range(self.retries):
                try:
                    with self.pool.connection() as conn:
                        return once(conn)
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
        except StoreRejected:
            raise
        except Exception as exc:
            if self._transient(exc):
                raise StoreUnavailable(f"snowflake unreachable: {exc}") from exc
            if self._is_caller_error(exc):
                raise StoreRejected(f"snowflake refused the statement: {exc}") from exc
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
            for sql in cortex_sql.create_sql(self.cortex):
                cur.execute(sql)

        # Every statement is `IF NOT EXISTS`, so a failed init is safe to run again; replicas starting at
        # once create the same objects at once, and a catalog conflict there (seen on fakesnow's DuckDB,
        # whose DDL is not atomic) fails the loser's statement: it is run again, not reported as a refusal.
        for attempt in range(3):
            try:
                self._run(do, set_up=True)
                self._set_up = True
                return
            except StoreRejected as exc:
                if attempt == 2:
                    self._set_up_after, self._set_up_error = time.monotonic() + SETUP_RETRY_S, str(exc)
                    raise
                time.sleep(0.2 * 2**attempt)

    def _set_up_again(self) -> None:
        if time.monotonic() < self._set_up_after:
            raise StoreUnavailable(f"snowflake refused the set-up: {self._set_up_error}")
        try:
            self.init()
        except StoreRejected as exc:
            raise StoreUnavailable(f"snowflake refused the set-up: {exc}") from exc

    def _cols(self) -> str:
        # Cortex vectors stay in Snowflake: ranking happens there (dense_search).
        emb = "NULL" if self.cortex else "EMBEDDING"
        tail = "EMBEDDER, CREATED_AT, UPDATED_AT, EXPIRES_AT, VERSION"
        return f"ID, NAMESPACE, CONTENT, CONTENT_HASH, METADATA, {emb}, {tail}"

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
            embedder=r[6] if emb is not None else None,
            created_at=_epoch(r[7]) or 0.0,
            updated_at=_epoch(r[8]) or 0.0,
            expires_at=_epoch(r[9]),
            version=int(r[10] or 0),
        )

    # -- writes -----------------------------------------------------------------------------

    def apply(self, ops: list[Op]) -> dict[str, tuple[int, int]]:
        if not ops:
            return {}

        def do(conn: Any) -> dict[str, tuple[int, int]]:
            cur = conn.cursor()
            bumped: dict[str, tuple[int, int]] = {}

            def version(ns: str) -> int:
                if ns not in bumped:
                    for sql in cortex_sql.bump_sql():
                        cur.execute(sql, {"namespace": ns})
                    cur.execute(cortex_sql.version_sql(), {"namespace": ns})
                    new = int(cur.fetchone()[0])
                    bumped[ns] = (new - 1, new)
                return bumped[ns][1]

            t = _ts(now())
            i = 0
            while i < len(ops):  # consecutive puts (or embeds) go in one MERGE; order kept otherwise
                kind = ops[i].get("op")
                j = i
                while j < len(ops) and ops[j].get("op") == kind and kind in ("put", "embed"):
                    j += 1
                if kind == "put":
                    self._put(cur, [op_record(o) for o in ops[i:j]], version)
                elif kind == "embed":
                    self._embed(cur, ops[i:j], version)
                elif kind == "delete":
                    op = ops[i]
                    self._tombstone(cur, "ID = %(key)s", op["id"], version(op["namespace"]), t)
                elif kind == "delete_namespace":
                    op = ops[i]
                    self._tombstone(cur, "NAMESPACE = %(key)s", op["namespace"], version(op["namespace"]), t)
                else:
                    raise StoreRejected(f"unknown operation {kind!r}")
                i = max(j, i + 1)
            return bumped

        return self._run(do, transaction=True)

    def _put(self, cur: Any, recs: list[MemoryRecord], version: Callable[[str], int]) -> None:
        by_id = {r.id: r for r in recs}  # last write wins within a batch
        rows = []
        for r in by_id.values():
            emb = None
            if not self.cortex and r.embedding is not None:
                emb = embedding_json(r.embedding)
            rows.append(
                [r.id, r.namespace, r.content, r.content_hash, json.dumps(r.metadata), emb,
                 r.embedder if emb is not None else (self.embedder_name if self.cortex else None),
                 _ts(r.created_at), _ts(r.updated_at), _ts(r.expires_at), version(r.namespace)]
            )  # fmt: skip
        for part in chunks(rows):
            params = [v for row in part for v in row]
            for sql in cortex_sql.upsert_sql(len(part), self.cortex):
                cur.execute(sql, params)
            ids = [row[0] for row in part]
            cur.execute(f"DELETE FROM MEMORY_TOMBSTONES WHERE ID IN ({', '.join(['%s'] * len(ids))})", ids)

    def _embed(self, cur: Any, ops: list[Op], version: Callable[[str], int]) -> None:
        if self.cortex:
            return  # Snowflake embeds as rows are merged
        rows = [
            [o["id"], o["content_hash"], embedding_json(op_vector(o)), o["embedder"], version(o["namespace"])]
            for o in ops
        ]
        for part in chunks(rows):
            cur.execute(cortex_sql.embed_update_sql(len(part)), [v for row in part for v in row])

    @staticmethod
    def _tombstone(cur: Any, where: str, key: str, version: int, t: str) -> None:
        args = {"key": key, "version": version, "t": t}
        cur.execute(f"DELETE FROM MEMORY_TOMBSTONES WHERE ID IN (SELECT ID FROM MEMORIES WHERE {where})", args)
        cur.execute(
            "INSERT INTO MEMORY_TOMBSTONES (ID, NAMESPACE, VERSION, DELETED_AT)"
            f" SELECT ID, NAMESPACE, %(version)s, %(t)s::TIMESTAMP_NTZ FROM MEMORIES WHERE {where}",
            args,
        )
        cur.execute(f"DELETE FROM MEMORIES WHERE {where}", args)

    def purge_expired(self, now: float) -> list[tuple[str, str]]:
        def do(conn: Any) -> list[tuple[str, str]]:
            cur = conn.cursor()
            t = _ts(now)
            cur.execute("SELECT ID, NAMESPACE FROM MEMORIES WHERE EXPIRES_AT <= %(t)s::TIMESTAMP_NTZ", {"t": t})
            gone = [(r[0], r[1]) for r in cur.fetchall()]
            for ns in sorted({ns for _, ns in gone}):
                for sql in cortex_sql.bump_sql():
                    cur.execute(sql, {"namespace": ns})
                cur.execute(cortex_sql.version_sql(), {"namespace": ns})
                v = int(cur.fetchone()[0])
                args = {"ns": ns, "t": t, "version": v}
                expired = "NAMESPACE = %(ns)s AND EXPIRES_AT <= %(t)s::TIMESTAMP_NTZ"
                cur.execute(
                    f"DELETE FROM MEMORY_TOMBSTONES WHERE ID IN (SELECT ID FROM MEMORIES WHERE {expired})", args
                )
                cur.execute(
                    "INSERT INTO MEMORY_TOMBSTONES (ID, NAMESPACE, VERSION, DELETED_AT)"
                    f" SELECT ID, NAMESPACE, %(version)s, %(t)s::TIMESTAMP_NTZ FROM MEMORIES WHERE {expired}",
                    args,
                )
                cur.execute(f"DELETE FROM MEMORIES WHERE {expired}", args)
            cutoff = {"c": _ts(now - self.tombstone_retention)}
            cur.execute(
                "UPDATE MEMORY_NAMESPACES SET HORIZON = GREATEST(HORIZON, m.V) FROM (SELECT NAMESPACE AS NS,"
                " MAX(VERSION) AS V FROM MEMORY_TOMBSTONES WHERE DELETED_AT < %(c)s::TIMESTAMP_NTZ"
                " GROUP BY NAMESPACE) m WHERE MEMORY_NAMESPACES.NAMESPACE = m.NS",
                cutoff,
            )
            cur.execute("DELETE FROM MEMORY_TOMBSTONES WHERE DELETED_AT < %(c)s::TIMESTAMP_NTZ", cutoff)
            return gone

        return self._run(do, transaction=True)

    # -- reads ------------------------------------------------------------------------------

    def version(self, namespace: str) -> int:
        def do(conn: Any) -> int:
            cur = conn.cursor()
            cur.execute(cortex_sql.version_sql(), {"namespace": namespace})
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self._run(do)

    def snapshot(self, namespace: str, now: float) -> Changes:
        def do(conn: Any) -> Changes:
            cur = conn.cursor()
            cur.execute(cortex_sql.version_sql(), {"namespace": namespace})
            row = cur.fetchone()
            cur.execute(
                f"SELECT {self._cols()} FROM MEMORIES WHERE NAMESPACE = %(ns)s"
                " AND EXPIRES_AT > %(now)s::TIMESTAMP_NTZ ORDER BY CREATED_AT, ID",
                {"ns": namespace, "now": _ts(now)},
            )
            return Changes(int(row[0]) if row else 0, [self._row(r) for r in cur.fetchall()], full=True)

        return self._run(do, transaction=True)

    def changes(self, namespace: str, since: int) -> Changes | None:
        def do(conn: Any) -> Changes | None:
            cur = conn.cursor()
            cur.execute(cortex_sql.version_sql(), {"namespace": namespace})
            row = cur.fetchone()
            version, horizon = (int(row[0]), int(row[1])) if row else (0, 0)
            if since < horizon:
                return None
            args = {"ns": namespace, "since": since}
            cur.execute(
                f"SELECT {self._cols()} FROM MEMORIES WHERE NAMESPACE = %(ns)s AND VERSION > %(since)s"
                " ORDER BY CREATED_AT, ID",
                args,
            )
            recs = [self._row(r) for r in cur.fetchall()]
            cur.execute("SELECT ID FROM MEMORY_TOMBSTONES WHERE NAMESPACE = %(ns)s AND VERSION > %(since)s", args)
            return Changes(version, recs, [r[0] for r in cur.fetchall()])

        return self._run(do, transaction=True)

    def get(self, memory_id: str) -> tuple[MemoryRecord | None, int]:
        def do(conn: Any) -> tuple[MemoryRecord | None, int]:
            cur = conn.cursor()
            cur.execute(
                f"SELECT {self._cols()}, (SELECT n.VERSION FROM MEMORY_NAMESPACES n WHERE n.NAMESPACE = m.NAMESPACE)"
                " FROM MEMORIES m WHERE m.ID = %(id)s",
                {"id": memory_id},
            )
            r = cur.fetchone()
            return (None, 0) if r is None else (self._row(r[:11]), int(r[11] or 0))

        return self._run(do)

    def dense_search(
        self, namespace: str, query: str, limit: int, now: float, filters: dict | None = None
    ) -> list[tuple[str, float]]:
        """Cortex: ids and cosine similarities ranked in Snowflake, among rows passing `filters`."""
        assert self.cortex is not None
        where = FilterSQL()
        sql = cortex_sql.dense_search_sql(self.cortex, where.compile(filters))

        def do(conn: Any) -> list[tuple[str, float]]:
            cur = conn.cursor()
            cur.execute(
                sql,
                {"query": query, "namespace": namespace, "now": _ts(now), "limit": int(limit), **where.params},
            )
            return [(r[0], float(r[1])) for r in cur.fetchall()]

        return self._run(do)

    def unembedded(self, embedder: str, updated_before: float, limit: int) -> list[MemoryRecord]:
        if self.cortex:
            return []

        def do(conn: Any) -> list[MemoryRecord]:
            cur = conn.cursor()
            cur.execute(
                f"SELECT {self._cols()} FROM MEMORIES WHERE (EMBEDDING IS NULL OR EMBEDDER IS DISTINCT FROM %(e)s)"
                " AND UPDATED_AT <= %(t)s::TIMESTAMP_NTZ ORDER BY UPDATED_AT LIMIT %(n)s",
                {"e": embedder, "t": _ts(updated_before), "n": int(limit)},
            )
            return [self._row(r) for r in cur.fetchall()]

        return self._run(do)

    def count(self, namespace: str | None) -> int:
        def do(conn: Any) -> int:
            cur = conn.cursor()
            if namespace is None:
                cur.execute("SELECT COUNT(*) FROM MEMORIES")
            else:
                cur.execute("SELECT COUNT(*) FROM MEMORIES WHERE NAMESPACE = %(ns)s", {"ns": namespace})
            return int(cur.fetchone()[0])

        return self._run(do)

    def close(self) -> None:
        self.pool.close()
