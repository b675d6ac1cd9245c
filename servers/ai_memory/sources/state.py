"""Per namespace, source and scope: the ingestion cursor, item count and last run, in a SQLite file;
and per namespace, the keys of the items ingested so far (to tell an update from a new item).

This file only saves work and names counts: memories are upserted by key, so losing it (or running
on another replica) makes the next ingest re-read and skip what is already there, never duplicate it
(a changed item is then counted as ingested, not updated).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    namespace TEXT NOT NULL,
    source TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    scope TEXT NOT NULL,
    cursor TEXT,
    items INTEGER NOT NULL DEFAULT 0,
    last_run REAL,
    last_result TEXT,
    PRIMARY KEY (namespace, source, scope_key)
);
CREATE TABLE IF NOT EXISTS items (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""


def scope_key(scope: dict[str, Any]) -> str:
    """The scope as canonical JSON: the same scope always names the same cursor."""
    return json.dumps(scope, sort_keys=True, separators=(",", ":"), default=str)


class SourceState:
    """Reads and writes the `sources` table of `path`, off the event loop: one connection, opened (WAL, the
    schema) on first use and shared by the worker threads under a lock. (A connection per call set WAL and
    ran the schema each time, and two runs opening and closing theirs at once under load failed a call with
    "database is locked".)"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _connected(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
                self._conn = conn
            yield self._conn

    async def cursor(self, namespace: str, source: str, scope: dict[str, Any]) -> Any:
        def read() -> Any:
            with self._connected() as conn:
                row = conn.execute(
                    "SELECT cursor FROM sources WHERE namespace=? AND source=? AND scope_key=?",
                    (namespace, source, scope_key(scope)),
                ).fetchone()
            return json.loads(row[0]) if row and row[0] is not None else None

        return await anyio.to_thread.run_sync(read)

    async def checkpoint(
        self, namespace: str, source: str, scope: dict[str, Any], cursor: Any, added: int, result: dict[str, Any]
    ) -> None:
        """Save the cursor after a batch, add the batch's new items to the count, note the run so far."""

        def write() -> None:
            with self._connected() as conn, conn:
                conn.execute(
                    """INSERT INTO sources (namespace, source, scope_key, scope, cursor, items, last_run, last_result)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (namespace, source, scope_key) DO UPDATE SET
                         cursor=excluded.cursor, items=items + excluded.items,
                         last_run=excluded.last_run, last_result=excluded.last_result""",
                    (
                        namespace,
                        source,
                        scope_key(scope),
                        scope_key(scope),
                        json.dumps(cursor),
                        added,
                        time.time(),
                        json.dumps(result),
                    ),
                )

        await anyio.to_thread.run_sync(write)

    async def seen(self, namespace: str, keys: list[str]) -> set[str]:
        """Which of `keys` were ingested into `namespace` before; all of them are noted as ingested now."""

        def mark() -> set[str]:
            with self._connected() as conn, conn:
                marks = ",".join("?" * len(keys))
                known = conn.execute(
                    f"SELECT key FROM items WHERE namespace=? AND key IN ({marks})", (namespace, *keys)
                ).fetchall()
                conn.executemany("INSERT OR IGNORE INTO items VALUES (?, ?)", [(namespace, k) for k in keys])
            return {k for (k,) in known}

        return await anyio.to_thread.run_sync(mark)

    async def listing(self, namespace: str | None) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            query = "SELECT namespace, source, scope, cursor, items, last_run, last_result FROM sources"
            args: tuple[Any, ...] = ()
            if namespace is not None:
                query, args = query + " WHERE namespace=?", (namespace,)
            with self._connected() as conn:
                rows = conn.execute(query + " ORDER BY namespace, source, scope_key", args).fetchall()
            return [
                {
                    "namespace": ns,
                    "source": source,
                    "scope": json.loads(scope),
                    "cursor": json.loads(cursor) if cursor is not None else None,
                    "items": items,
                    "last_run": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_run)) if last_run else None,
                    "last_result": json.loads(last_result) if last_result else None,
                }
                for ns, source, scope, cursor, items, last_run, last_result in rows
            ]

        return await anyio.to_thread.run_sync(read)
