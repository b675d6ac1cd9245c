"""The cache's L1-miss reads from a plain (not cluster) Redis: MGETs over one lean connection of their own,
parsed by hiredis's `Reader`, with no redis-py command machinery (pool, `Retry`, packing, parser classes)
and no task of their own.

- `read(keys)` returns a future at once. The reads of one loop turn (and the next), and those that arrive
  while an MGET is on its way, gather into one batch (keys deduplicated); one MGET is in flight at a time,
  and its answer is handed out from the connection's `data_received`, which sends the batch gathered
  meanwhile (two loop turns on, so that more join it). A reader that
  goes away (its future cancelled) takes nothing from the others.
- Every MGET is bounded by `timeout` (one loop timer for all of them, re-armed only when it fires): a batch
  not answered in time gets None, and the connection is dropped (a late answer would be taken for the next).
- The guard (a `Breaker`) admits each batch and counts its outcome, as for every other Redis operation: a
  batch refused by an open guard gets None without touching the network.
- Connecting is lazy (the first batch after start or after the connection was lost opens it, AUTH and
  SELECT pipelined ahead of the MGET), within the same `timeout`. A batch whose connection closes under it
  is sent once more on a new one (MGET is read-only), as redis-py's one retry did; then it gets None.

Only a `redis://` URL with at most user, password, host, port and database qualifies (`address`); anything
else (TLS, a Unix socket, query options, a cluster) stays on redis-py in `gateway.resilience.redis_link`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

from gateway.resilience.breakers import Breaker, BreakerOpen

Values = list[Any] | None


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None


def address(url: str) -> Address | None:
    """The address of a plain `redis://host[:port][/db]` URL (with an optional `user:password@`), or None for a
    URL this module does not serve (another scheme, query options, anything it would not understand)."""
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() != "redis" or parts.query or parts.fragment or not parts.hostname:
            return None
        path = parts.path.strip("/")
        db = int(path) if path else 0
        port = parts.port or 6379
    except ValueError:
        return None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return Address(parts.hostname, port, db, username, password)


def pack(*args: str | bytes | int) -> bytes:
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # its stub types a 1-tuple
    return packed


class KeyBatch:
    """The distinct keys of one MGET, in order, and where each is: the readers who join it ask for their
    keys' places in the answer (also the batches of redis-py's path, `gateway.resilience.redis_link`)."""

    __slots__ = ("index", "keys")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, keys: tuple[str, ...]) -> list[int]:
        places = []
        for key in keys:
            place = self.index.get(key)
            if place is None:
                place = self.index[key] = len(self.keys)
                self.keys.append(key)
            places.append(place)
        return places


class _Batch(KeyBatch):
    """The reads of one MGET: its distinct keys, each reader's future and the places of its keys."""

    __slots__ = ("attempts", "probe", "sent", "waiters")

    def __init__(self) -> None:
        super().__init__()
        self.waiters: list[tuple[asyncio.Future[Values], list[int]]] = []
        self.sent = 0.0
        self.probe = False
        self.attempts = 0

    def resolve(self, values: Values) -> None:
        for future, places in self.waiters:
            if not future.done():  # a reader that went away
                future.set_result(None if values is None else [values[place] for place in places])


_SETUP = object()  # the expected answer of an AUTH or SELECT sent on connecting


class _Connection(asyncio.Protocol):
    """One TCP connection to Redis; hands its replies, in order, to the pipe that opened it."""

    def __init__(self, pipe: MgetPipe) -> None:
        self.pipe = pipe
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.expected: deque[Any] = deque()  # _SETUP markers and the batch in flight, in the order sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pipe = self.pipe
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as error:
                pipe.lost(self, error, again=False)
                return
            if reply is False:
                return
            if not self.expected:
                pipe.lost(self, ConnectionError("Redis sent an answer nobody asked for"), again=False)
                return
            what = self.expected.popleft()
            if what is _SETUP:
                if isinstance(reply, hiredis.ReplyError):  # AUTH or SELECT refused
                    pipe.lost(self, reply, again=False)
                    return
            else:
                pipe.answered(what, reply)
                if pipe.connection is not self:  # the answer ended this connection (or the pipe closed)
                    return

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pipe.lost(self, exc or ConnectionError("Redis closed the connection"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None


class MgetPipe:
    """The L1-miss MGETs of one `RedisLink`, over one connection (see the module's docstring)."""

    def __init__(
        self, where: Address, timeout: float, guard: Breaker, on_error: Callable[[BaseException], None]
    ) -> None:
        self.where = where
        self.timeout = timeout
        self.guard = guard
        self.on_error = on_error
        self.connection: _Connection | None = None  # open (or opening) connection
        self.ready = False  # `connection` is open and its AUTH/SELECT are sent
        self._connecting: asyncio.Task[None] | None = None
        self._gathering: _Batch | None = None  # the reads for the next MGET
        self._in_flight: _Batch | None = None  # the MGET on its way
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self.batches = 0  # MGETs sent (admitted by the guard)
        self.connects = 0  # connections opened

    def read(self, keys: tuple[str, ...]) -> asyncio.Future[Values]:
        """A future of the values of `keys` in order (None when Redis is down, refused or failed)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Values] = loop.create_future()
        batch = self._gathering
        if batch is None:
            batch = self._gathering = _Batch()
            if self._in_flight is None:
                loop.call_soon(self._later)  # two loop turns on, see `_later`
        batch.waiters.append((future, batch.add(keys)))
        return future

    def warm(self) -> None:
        """Open the connection now, if it is not (Redis answered elsewhere): the next read need not wait for
        it. A read that comes while it opens waits for it within its own timeout."""
        if self.connection is None and self._connecting is None and not self.closed:
            self._loop = self._loop or asyncio.get_running_loop()
            self._connecting = self._loop.create_task(self._connect())

    # ------------------------------------------------------------------ sending

    def _later(self) -> None:
        """Send the gathering batch one loop turn later still: the reads of this turn, and those of the requests
        whose tasks start in the next (their data came in the same poll), join it. Measured under wrk at 16
        connections: 7-10 lookups per MGET against 4-5 when sent on the first turn, one write and one read
        syscall (~14 µs) per MGET shared by twice as many calls."""
        assert self._loop is not None
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        batch = self._gathering
        if batch is None or self._in_flight is not None:
            return
        self._gathering = None
        if self.closed:
            batch.resolve(None)
            return
        try:
            batch.probe = self.guard.admit()
        except BreakerOpen:
            batch.resolve(None)
            return
        assert self._loop is not None
        self._in_flight = batch
        self.batches += 1
        batch.sent = self._loop.time()
        batch.attempts = 1
        if self._timer is None:
            self._timer = self._loop.call_at(batch.sent + self.timeout, self._check)
        self._send(batch)

    def _send(self, batch: _Batch) -> None:
        connection = self.connection
        if connection is not None and self.ready and connection.transport is not None:
            connection.expected.append(batch)
            connection.transport.write(pack("MGET", *batch.keys))
        elif self._connecting is None:
            assert self._loop is not None
            self._connecting = self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        assert self._loop is not None
        task = asyncio.current_task()
        where = self.where
        connection = _Connection(self)
        self.connection, self.ready = connection, False
        try:
            await self._loop.create_connection(lambda: connection, where.host, where.port)
        except OSError as error:
            if self._connecting is task:
                self._connecting = None
            self.lost(connection, error, again=False)  # Redis refuses connections: no second try
            return
        if self._connecting is task:
            self._connecting = None
        if self.connection is not connection or connection.transport is None:
            connection.close()  # dropped (timed out, closed) meanwhile
            return
        self.connects += 1
        setup = b""
        if where.password is not None:
            auth = ("AUTH", where.username, where.password) if where.username else ("AUTH", where.password)
            setup += pack(*auth)
            connection.expected.append(_SETUP)
        if where.db:
            setup += pack("SELECT", where.db)
            connection.expected.append(_SETUP)
        if setup:
            connection.transport.write(setup)
        self.ready = True
        if (batch := self._in_flight) is not None:
            self._send(batch)

    # ------------------------------------------------------------------ answers and failures

    def answered(self, batch: _Batch, reply: Any) -> None:
        if batch is not self._in_flight:
            return  # a batch already failed (timed out): its late answer is dropped with the connection
        if not isinstance(reply, list) or len(reply) != len(batch.keys):
            error = reply if isinstance(reply, hiredis.ReplyError) else ConnectionError(f"MGET answered {reply!r:.80}")
            self._fail(batch, error)
            return
        self._in_flight = None
        self.guard.record(None, batch.probe)
        batch.resolve(reply)
        self._next()

    def lost(self, connection: _Connection, error: BaseException, again: bool = True) -> None:
        """`connection` closed or broke: the batch on it is sent once more on a new one (`again`, and not
        already sent twice), or gets None."""
        if connection is not self.connection:
            return
        self.connection, self.ready = None, False
        connection.close()
        batch = self._in_flight
        if batch is None:
            return
        assert self._loop is not None
        if again and batch.attempts < 2 and self._connecting is None and self._loop.time() < batch.sent + self.timeout:
            batch.attempts += 1
            self._send(batch)  # a new connection, within the batch's own timeout
        else:
            self._fail(batch, error)

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        self._in_flight = None
        self._drop()  # an answer still on its way would be taken for the next MGET's
        self.guard.record("unavailable", batch.probe)
        self.on_error(error)
        batch.resolve(None)
        self._next()

    def _next(self) -> None:
        if self._gathering is not None:
            assert self._loop is not None
            self._loop.call_soon(self._later)

    def _check(self) -> None:
        self._timer = None
        batch = self._in_flight
        if batch is None:
            return
        assert self._loop is not None
        deadline = batch.sent + self.timeout
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check)
            return
        self._fail(batch, TimeoutError(f"Redis did not answer within {self.timeout:g} s"))

    def _drop(self) -> None:
        connection, self.connection, self.ready = self.connection, None, False
        if connection is not None:
            connection.close()
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None

    def close(self) -> None:
        """Drop the connection; every read still waiting, or made from now on, gets None."""
        self.closed = True
        self._drop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for batch in (self._in_flight, self._gathering):
            if batch is not None:
                self.guard.release_probe(batch.probe)
                batch.resolve(None)
        self._in_flight = self._gathering = None
