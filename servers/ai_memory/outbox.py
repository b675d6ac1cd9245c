"""A durable local outbox for writes the L3 store could not take.

A sqlite file in WAL mode with synchronous=FULL: `append` returns only after the
operations are fsync'd, so acknowledging a write once it is here is safe against SIGKILL
and power loss. The drainer replays entries in sequence order and deletes them only after
the store has committed them; every operation is an idempotent upsert/delete by id, so a
crash between the store commit and the outbox delete replays without duplicates.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from servers.ai_memory.store import serialise_op


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
        conn.execute(
            "CREATE TABLE IF NOT EXISTS OUTBOX (SEQ INTEGER PRIMARY KEY AUTOINCREMENT, OP TEXT NOT NULL)"
        )
        self._conn = conn

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("outbox is not open")
        return self._conn

    def append(self, ops: list[dict[str, Any]]) -> None:
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO OUTBOX (OP) VALUES (?)", [(json.dumps(serialise_op(op)),) for op in ops]
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def peek(self, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db().execute("SELECT SEQ, OP FROM OUTBOX ORDER BY SEQ LIMIT ?", (limit,)).fetchall()
        return [(seq, json.loads(op)) for seq, op in rows]

    def remove_through(self, seq: int) -> None:
        with self._lock:
            self._db().execute("DELETE FROM OUTBOX WHERE SEQ <= ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM OUTBOX").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
