"""A durable local outbox for writes the L3 store could not take, and its dead-letter list.

A sqlite file in WAL mode with synchronous=FULL: `append` returns only after the operations
are fsync'd, so acknowledging a write once it is here is safe against SIGKILL and power loss.
The drainer (maintenance.py) replays entries in sequence order and deletes them only after the
store has committed them; every operation is an idempotent upsert/delete by id, so a crash
between the store commit and the outbox delete replays without duplicates. An operation the
store rejects for good moves to DEAD with the reason, out of the way of later writes, until
an operator replays or discards it.

Several processes may share one outbox file (replicas over one data dir): the count is read
from the table, and `draining()` is an exclusive file lock, so only one of them replays at a
time (a replay racing another would re-apply an old operation over a newer write).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servers.ai_memory.store import serialise_op

# The namespace an operation acts on: a put carries it in its record, every other operation at the top.
_NAMESPACE = "COALESCE(json_extract(OP, '$.namespace'), json_extract(OP, '$.record.namespace'))"


def _in(namespace: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause keeping the operations on `namespace` (every operation when None)."""
    return ("", ()) if namespace is None else (f" WHERE {_NAMESPACE} = ?", (namespace,))


def _dead_of(seqs: list[int] | None, namespace: str | None) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause keeping the dead letters of `seqs` (every one when None) on `namespace` (any when None)."""
    where, args = _in(namespace)
    if seqs is None:
        return where, args
    picked = f"SEQ IN ({','.join('?' * len(seqs))})"
    return (f"{where} AND {picked}" if where else f" WHERE {picked}"), (*args, *seqs)


SCHEMA = """
CREATE TABLE IF NOT EXISTS OUTBOX (SEQ INTEGER PRIMARY KEY AUTOINCREMENT, OP TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS DEAD (
    SEQ INTEGER PRIMARY KEY, OP TEXT NOT NULL, REASON TEXT NOT NULL, QUEUED_AT REAL, FAILED_AT REAL NOT NULL
);
"""


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        if "QUEUED_AT" not in {r[1] for r in conn.execute("PRAGMA table_info(OUTBOX)")}:
            conn.execute("ALTER TABLE OUTBOX ADD COLUMN QUEUED_AT REAL")
        self._conn = conn

    @property
    def depth(self) -> int:
        """Pending operations (of every process sharing the file)."""
        return self.pending()

    def pending(self, namespace: str | None = None) -> int:
        """Pending operations on `namespace` (on every namespace when None)."""
        where, args = _in(namespace)
        with self._lock:
            return int(self._db().execute(f"SELECT COUNT(*) FROM OUTBOX{where}", args).fetchone()[0])

    @contextlib.contextmanager
    def draining(self) -> Iterator[bool]:
        """Yields True when this process holds the replay lock, False when another one does."""
        with open(self.path.with_suffix(".drain-lock"), "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("outbox is not open")
        return self._conn

    def _txn(self, fn: Any) -> Any:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            out = fn(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def append(self, ops: list[dict[str, Any]]) -> None:
        t = time.time()
        rows = [(json.dumps(serialise_op(op)), t) for op in ops]
        with self._lock:
            self._txn(lambda db: db.executemany("INSERT INTO OUTBOX (OP, QUEUED_AT) VALUES (?, ?)", rows))

    def peek(self, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db().execute("SELECT SEQ, OP FROM OUTBOX ORDER BY SEQ LIMIT ?", (limit,)).fetchall()
        return [(seq, json.loads(op)) for seq, op in rows]

    def remove_through(self, seq: int) -> None:
        with self._lock:
            self._db().execute("DELETE FROM OUTBOX WHERE SEQ <= ?", (seq,))

    def oldest_age(self, namespace: str | None = None) -> float | None:
        where, args = _in(namespace)
        with self._lock:
            row = self._db().execute(f"SELECT MIN(QUEUED_AT) FROM OUTBOX{where}", args).fetchone()
        return None if row[0] is None else max(0.0, time.time() - row[0])

    # -- dead letters ------------------------------------------------------------------------

    def bury(self, seq: int, reason: str) -> None:
        """Move one pending operation to the dead-letter list."""

        def do(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO DEAD (SEQ, OP, REASON, QUEUED_AT, FAILED_AT)"
                " SELECT SEQ, OP, ?, QUEUED_AT, ? FROM OUTBOX WHERE SEQ = ?",
                (reason, time.time(), seq),
            )
            db.execute("DELETE FROM OUTBOX WHERE SEQ = ?", (seq,))

        with self._lock:
            self._txn(do)

    def dead(self, limit: int = 100, namespace: str | None = None) -> list[dict[str, Any]]:
        where, args = _in(namespace)
        query = f"SELECT SEQ, OP, REASON, QUEUED_AT, FAILED_AT FROM DEAD{where} ORDER BY SEQ LIMIT ?"
        with self._lock:
            rows = self._db().execute(query, (*args, limit)).fetchall()
        return [
            {"seq": s, "op": json.loads(op), "reason": reason, "queued_at": q, "failed_at": f}
            for s, op, reason, q, f in rows
        ]

    def last_dead(self, namespace: str | None = None) -> dict[str, Any] | None:
        """The dead letter buried last (its reason is what an operator looks at first), or None."""
        where, args = _in(namespace)
        with self._lock:
            row = (
                self._db()
                .execute(
                    f"SELECT SEQ, REASON, FAILED_AT FROM DEAD{where} ORDER BY FAILED_AT DESC, SEQ DESC LIMIT 1", args
                )
                .fetchone()
            )
        return None if row is None else {"seq": row[0], "reason": row[1], "failed_at": row[2]}

    def dead_count(self, namespace: str | None = None) -> int:
        where, args = _in(namespace)
        with self._lock:
            return int(self._db().execute(f"SELECT COUNT(*) FROM DEAD{where}", args).fetchone()[0])

    def resurrect(self, seqs: list[int] | None, namespace: str | None = None) -> int:
        """Queue dead letters again (at the end of the outbox): those of `seqs` (all when None), of
        `namespace` only when one is given."""
        where, args = _dead_of(seqs, namespace)

        def do(db: sqlite3.Connection) -> int:
            rows = db.execute(f"SELECT OP, QUEUED_AT FROM DEAD{where} ORDER BY SEQ", args).fetchall()
            db.executemany("INSERT INTO OUTBOX (OP, QUEUED_AT) VALUES (?, ?)", rows)
            db.execute(f"DELETE FROM DEAD{where}", args)
            return len(rows)

        with self._lock:
            return self._txn(do)

    def discard(self, seqs: list[int] | None, namespace: str | None = None) -> int:
        """Drop dead letters for good: those of `seqs` (all when None), of `namespace` only when given."""
        where, args = _dead_of(seqs, namespace)
        with self._lock:
            return self._txn(lambda db: db.execute(f"DELETE FROM DEAD{where}", args).rowcount)

    def __len__(self) -> int:
        return self.depth

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
