"""One pooled `redis.asyncio` client per gateway (hiredis parser when installed), guarded so that Redis being
down or slow costs at most one short timeout and then nothing at all until it is back.

- every operation runs under `redis.timeout` and a breaker of its own (`redis.fail_max` failures bypass
  Redis for `redis.retry_after` s, then one probe operation decides);
- one long-lived task listens on the `<prefix>:events` channel (breaker transitions and cache generations
  published by the other replicas) and, on every (re)connect, runs the owner's resync;
- one long-lived task publishes this replica's breaker transitions from a bounded outbox, so the
  synchronous breaker code never awaits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.resilience.breakers import Breaker, BreakerOpen
from gateway.resilience.settings import BreakerSettings, RedisSettings

logger = logging.getLogger("mcp_gateway.redis")

_ERRORS = (RedisError, OSError, TimeoutError, ValueError)


class RedisLink:
    def __init__(self, url: str, settings: RedisSettings) -> None:
        self.url = url
        self.settings = settings
        self.prefix = settings.prefix
        self.channel = f"{settings.prefix}:events"
        self.replica = secrets.token_hex(6)
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
        self.ops = 0
        self.errors = 0
        self.last_error: str | None = None
        self.on_message: Callable[[dict[str, Any]], None] | None = None
        self.on_connect: Callable[[], Awaitable[None]] | None = None
        self._outbox_send, self._outbox = anyio.create_memory_object_stream[tuple[str, dict[str, Any]]](1000)

    @property
    def up(self) -> bool:
        return self.guard.storage.state == "closed"

    async def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> tuple[bool, Any]:
        """Run one Redis operation under the timeout and the guard: (True, result) or (False, None)."""
        try:
            probe = self.guard.admit()
        except BreakerOpen:
            return False, None
        self.ops += 1
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
            pubsub = self.client.pubsub()
            try:
                with anyio.fail_after(self.settings.timeout * 4):
                    await pubsub.subscribe(self.channel)
                self.listening = True
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
                        self.on_message(data)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as error:
                if self.listening or self.last_error is None:
                    self._failed(error)
                self.listening = False
                self.guard.cb.open()
            finally:
                with anyio.move_on_after(1, shield=True):
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            await anyio.sleep(self.settings.retry_after)

    async def aclose(self) -> None:
        with anyio.move_on_after(1, shield=True):
            await self.client.aclose()

