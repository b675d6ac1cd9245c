"""One pooled `redis.asyncio` client per gateway (hiredis parser when installed), guarded so that Redis being
down or slow costs at most one short timeout and then nothing at all until it is back.

- every operation runs under `redis.timeout` and a breaker of its own (`redis.fail_max` failures bypass
  Redis for `redis.retry_after` s, then one probe operation decides);
- one long-lived task listens on the `<prefix>:events` channel (breaker transitions and cache generations
  published by the other replicas) and, on every (re)connect, runs the owner's resync;
- one long-lived task publishes this replica's breaker transitions from a bounded outbox, so the
  synchronous breaker code never awaits;
- `read` batches: every read started in the same event-loop turn, or while the MGET ahead of it is on its way,
  goes out as one MGET (one round trip, one pass through the guard for all of them), so concurrent L2
  lookups cost little more than one. On a plain `redis://` URL these MGETs take a lean connection of their
  own (`gateway.resilience.redis_reads`: hiredis's `Reader`, no redis-py per command); on a cluster, or a
  URL that module does not serve, they go through redis-py.

Redis Cluster: a URL with the scheme `redis+cluster://` (or `rediss+cluster://`) names one or more seed
nodes of a cluster (`redis+cluster://:password@node1:6379`); the client is then `RedisCluster`. Every
multi-key operation of the gateway either uses keys that share a hash tag (the cache's `{server}`) or goes
through `mget`, which splits across slots on a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.config.resilience import BreakerSettings, RedisSettings
from gateway.resilience.breakers import Breaker, BreakerOpen
from gateway.resilience.redis_reads import KeyBatch, MgetPipe, address

logger = logging.getLogger("mcp_gateway.redis")

_ERRORS = (RedisError, OSError, TimeoutError, ValueError)

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster(url: str) -> bool:
    return url.lower().startswith(CLUSTER_SCHEMES)


def plain_url(url: str) -> str:
    """The URL redis-py parses: `redis+cluster://…` -> `redis://…` (a plain URL unchanged)."""
    if is_cluster(url):
        scheme, rest = url.split("://", 1)
        return scheme.lower().replace("+cluster", "") + "://" + rest
    return url


def connect(url: str, *, timeout: float, max_connections: int = 32, **options: Any) -> Any:
    """A `redis.asyncio` client for `url`: `RedisCluster` for a `redis+cluster://` URL, else `Redis`."""
    if is_cluster(url):
        return RedisCluster.from_url(
            plain_url(url),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=max_connections,
            **options,
        )
    return aioredis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=max_connections, **options
    )


class _Batch(KeyBatch):
    """The reads of one loop turn: their distinct keys, then the values (None when Redis failed)."""

    __slots__ = ("done", "values")

    def __init__(self) -> None:
        super().__init__()
        self.values: list[Any] | None = None
        self.done = asyncio.Event()  # asyncio's own: anyio's looks up its backend at each creation


class RedisLink:
    def __init__(self, url: str, settings: RedisSettings) -> None:
        self.url = url
        self.settings = settings
        self.prefix = settings.prefix
        self.channel = f"{settings.prefix}:events"
        self.replica = secrets.token_hex(6)
        self.cluster = is_cluster(url)
        # a cluster client loads its slot map on first use; that is left to the listener (4 x timeout), so no
        # operation bounded by the short per-operation timeout starts it and fails
        self.mapped = not self.cluster
        self.client: Any
        if self.cluster:
            # per-node pools; MOVED/ASK redirections and a slot-map refresh are handled by the client
            self.client = connect(
                url, timeout=settings.timeout, max_connections=settings.max_connections, retry=Retry(NoBackoff(), 1)
            )
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=settings.max_connections,
                timeout=settings.timeout,  # waiting for a pooled connection
                socket_timeout=settings.timeout,
                socket_connect_timeout=settings.timeout,
                retry=Retry(NoBackoff(), 1),  # one reconnect for a connection that died under us, no more
            )
            self.client = aioredis.Redis(connection_pool=pool)
        self.guard = Breaker(
            "redis",
            BreakerSettings(fail_max=settings.fail_max, reset_timeout=settings.retry_after, count=["unavailable"]),
            publish=None,
        )
        self.listening = False
        self._ops = 0
        self.errors = 0
        self.last_error: str | None = None
        self.on_message: Callable[[dict[str, Any]], None] | None = None
        self.on_connect: Callable[[], Awaitable[None]] | None = None
        self._outbox_send, self._outbox = anyio.create_memory_object_stream[tuple[str, dict[str, Any]]](1000)
        self._batch: _Batch | None = None  # the reads gathering for the next MGET, see `_read_batched`
        self._in_flight: _Batch | None = None  # the MGET on its way
        self.reads = self._batches = 0
        where = None if self.cluster else address(url)
        self.pipe = None if where is None else MgetPipe(where, settings.timeout, self.guard, self._failed)

    @property
    def ops(self) -> int:
        """Redis operations attempted (each MGET of `read` one)."""
        return self._ops if self.pipe is None else self._ops + self.pipe.batches

    @property
    def batches(self) -> int:
        """MGETs sent for `read`."""
        return self._batches if self.pipe is None else self.pipe.batches

    @property
    def up(self) -> bool:
        return self.guard.storage.state == "closed"

    async def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> tuple[bool, Any]:
        """Run one Redis operation under the timeout and the guard: (True, result) or (False, None)."""
        if not self.mapped:
            return False, None
        try:
            probe = self.guard.admit()
        except BreakerOpen:
            return False, None
        self._ops += 1
        try:
            with anyio.fail_after(self.settings.timeout):
                result = await fn(*args)
        except _ERRORS as error:
            self._failed(error)
            self.guard.record("unavailable", probe)
            return False, None
        except BaseException:
            self.guard.release_probe(probe)
            raise
        self.guard.record(None, probe)
        return True, result

    async def mget(self, *keys: str) -> list[Any]:
        """MGET of keys that may live in different slots (split per slot on a cluster)."""
        values: list[Any]
        if self.cluster:
            values = await self.client.mget_nonatomic(*keys)
        else:
            values = await self.client.mget(*keys)
        return values

    def read(self, *keys: str) -> Awaitable[list[Any] | None]:
        """The values of `keys` (None when Redis is down or failed), read in one MGET with every other `read`
        started before it goes out: one batch is in flight at a time, and the reads that arrive meanwhile
        (or in the same loop turn) go out together when it returns."""
        self.reads += 1
        if self.pipe is not None:
            return self.pipe.read(keys)
        return self._read_batched(keys)

    async def _read_batched(self, keys: tuple[str, ...]) -> list[Any] | None:
        """`read` through redis-py (a cluster): the first reader of a batch sends it, shielded from its own
        cancellation (each batch is bounded by `redis.timeout`), so a client going away never leaves the
        other readers of its batch without their answer."""
        batch = self._batch
        if batch is not None:  # someone sends this batch: join it
            places = batch.add(keys)
            await batch.done.wait()
        else:
            batch = self._batch = _Batch()
            places = batch.add(keys)
            try:
                with anyio.CancelScope(shield=True):
                    while (ahead := self._in_flight) is not None:
                        await ahead.done.wait()  # the reads that come meanwhile join this batch
                    await anyio.sleep(0)  # and those of this loop turn
                    self._batch, self._in_flight = None, batch
                    self._batches += 1
                    ok, values = await self.run(self.mget, *batch.keys)
                    batch.values = values if ok else None
            finally:
                if self._batch is batch:
                    self._batch = None
                if self._in_flight is batch:
                    self._in_flight = None
                batch.done.set()
        values = batch.values
        return None if values is None else [values[place] for place in places]

    def _failed(self, error: BaseException) -> None:
        self.errors += 1
        text = str(error) or type(error).__name__
        if self.last_error != text:
            logger.warning("redis %s: %s; using the in-process cache and breakers alone", self.url, text)
        self.last_error = text

    def post(self, kind: str, message: dict[str, Any]) -> None:
        """Queue a message for the other replicas (never blocks; dropped if the outbox is full)."""
        try:
            self._outbox_send.send_nowait((kind, message))
        except anyio.WouldBlock:
            logger.debug("redis outbox full; dropped a %s message", kind)

    async def publish(self, message: dict[str, Any], key: str | None = None, value: str | None = None) -> bool:
        """Optionally SET `key`, then PUBLISH `message` on the events channel, in one round trip."""
        payload = json.dumps({**message, "r": self.replica})

        async def send() -> None:
            if self.cluster:  # a cluster pipeline refuses PUBLISH (classic PUBLISH reaches every node anyway)
                if key is not None and value is not None:
                    await self.client.set(key, value)
                await self.client.publish(self.channel, payload)
                return
            async with self.client.pipeline(transaction=False) as pipe:
                if key is not None and value is not None:
                    pipe.set(key, value)
                pipe.publish(self.channel, payload)
                await pipe.execute()

        ok, _ = await self.run(send)
        return ok

    # ------------------------------------------------------------------ background tasks

    async def serve(self) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._publisher)
            await self._listen()

    async def _publisher(self) -> None:
        async for kind, message in self._outbox:
            key = f"{self.prefix}:{kind}:{message['n']}"
            await self.publish(message, key, json.dumps(message))

    async def _listen(self) -> None:
        while True:
            pubsub = None
            try:
                with anyio.fail_after(self.settings.timeout * 4):
                    if self.cluster:
                        await self.client.initialize()  # the slot map, which a cluster pub/sub needs first
                        self.mapped = True
                    pubsub = self.client.pubsub()
                    await pubsub.subscribe(self.channel)
                self.listening = True
                if self.pipe is not None:
                    self.pipe.warm()
                if self.guard.storage.state != "closed":
                    self.guard.cb.close()  # Redis is back: use it again at once
                self.last_error = None
                if self.on_connect is not None:
                    await self.on_connect()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        data = json.loads(message["data"])
                    except (ValueError, TypeError):
                        continue
                    if isinstance(data, dict) and data.get("r") != self.replica and self.on_message is not None:
                        try:
                            self.on_message(data)
                        except Exception:  # one bad event must not take the link down for every replica
                            logger.exception("dropped an event from %s that could not be applied", self.channel)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as error:
                if self.listening or self.last_error is None:
                    self._failed(error)
                self.listening = False
                self.guard.cb.open()
            finally:
                if pubsub is not None:
                    with anyio.move_on_after(1, shield=True), contextlib.suppress(Exception):
                        await pubsub.aclose()
            await anyio.sleep(self.settings.retry_after)

    async def aclose(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
        with anyio.move_on_after(1, shield=True):
            await self.client.aclose()
