"""L1: the hot key-value tier.

`RedisCache` (when REDIS_URL is set) uses one pooled `redis.asyncio` client with short
socket timeouts. Any Redis failure marks the cache down for a back-off period and turns
every call into a miss: clients never see a Redis error, and since L1 only ever holds
copies, nothing is lost.

Every key a `RedisCache` reads or writes starts with its prefix (`redis_prefix`): the name of the
store it caches, so two memories on one Redis database never see each other's keys, and every
replica over one store (same prefix) shares them. Callers name keys without it (`rec:{id}`,
`q:{ns}:{version}:{hash}`, `ver:{ns}`).

Redis also carries the change signal between replicas: `ver:{namespace}` holds the
highest L3 version a replica has written there (`raise_to` only ever raises it). Signals that
could not be sent while Redis was down are sent before the cache is used again. Nothing here
is trusted for correctness: every cached entry is stamped with the L3 version it reflects and
checked against it by the reader (coherence.py), so a flushed or restored Redis means misses.

`LocalLRUCache` is the embedded default: a bounded in-process LRU with per-key TTLs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)


def redis_prefix(store_identity: str, override: str | None = None) -> str:
    """The prefix of one memory's Redis keys: the operator's name for it (AI_MEMORY_REDIS_PREFIX), else
    `aimem:` and a short hash of the L3 store's identity (what every replica over that store derives alike)."""
    if override:
        return override
    return "aimem:" + hashlib.sha256(store_identity.encode()).hexdigest()[:16]


# max-set in one step, so that two replicas signalling at once never lower the value
RAISE_TO = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local value = tonumber(ARGV[1])
if value > current then redis.call('SET', KEYS[1], value) end
return math.max(value, current)
"""


class CacheStats:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0

    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class LocalLRUCache:
    backend = "local-lru"

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.stats = CacheStats()

    @property
    def available(self) -> bool:
        return True

    def _get(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires and expires <= time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    async def get(self, key: str) -> Any:
        return self._get(key)

    async def set(self, key: str, value: Any, ttl: float) -> None:
        self._data[key] = (time.monotonic() + ttl if ttl else 0.0, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_items:
            self._data.popitem(last=False)

    async def delete(self, *keys: str) -> None:
        for k in keys:
            self._data.pop(k, None)

    async def raise_to(self, key: str, value: int) -> None:
        current = self._get(key) or 0
        self._data[key] = (0.0, max(int(current), value))

    async def get_int(self, key: str) -> int | None:
        v = self._get(key)
        return 0 if v is None else int(v)

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    backend = "redis"

    def __init__(self, url: str, timeout: float = 0.25, backoff: float = 2.0, *, prefix: str = "aimem") -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self._p = prefix + ":"
        self.timeout = timeout
        self.backoff = backoff
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_connections": 32,
            "decode_responses": True,
        }
        if url.lower().startswith(("redis+cluster://", "rediss+cluster://")):
            # a Redis Cluster (the gateway's URL convention); multi-key DEL is split per slot by the client
            scheme, rest = url.split("://", 1)
            self._client = aioredis.RedisCluster.from_url(
                scheme.lower().replace("+cluster", "") + "://" + rest, **options
            )
        else:
            self._client = aioredis.Redis.from_url(url, retry_on_timeout=False, **options)
        self._down_until = 0.0
        self._pending_raise: dict[str, int] = {}
        self._raise = self._client.register_script(RAISE_TO)
        self.stats = CacheStats()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _fail(self, exc: BaseException) -> None:
        self.stats.errors += 1
        if self.available:
            log.warning("L1 redis unavailable, degrading to no L1 for %.1fs: %s", self.backoff, exc)
        self._down_until = time.monotonic() + self.backoff

    async def _flush_pending(self) -> None:
        while self._pending_raise:
            key, value = next(iter(self._pending_raise.items()))
            await self._raise(keys=[key], args=[value])
            if self._pending_raise.get(key) == value:
                del self._pending_raise[key]

    async def _ready(self) -> bool:
        if not self.available:
            return False
        try:
            await self._flush_pending()
            return True
        except Exception as exc:
            self._fail(exc)
            return False

    async def get(self, key: str) -> Any:
        if not await self._ready():
            return None
        try:
            raw = await self._client.get(self._p + key)
        except Exception as exc:
            self._fail(exc)
            return None
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl: float) -> None:
        if not await self._ready():
            return
        try:
            await self._client.set(self._p + key, json.dumps(value, separators=(",", ":")), px=max(1, int(ttl * 1000)))
        except Exception as exc:
            self._fail(exc)

    async def delete(self, *keys: str) -> None:
        """Best effort: a key left behind is stamped with an older version and never served."""
        if not keys or not await self._ready():
            return
        try:
            await self._client.delete(*[self._p + k for k in keys])
        except Exception as exc:
            self._fail(exc)

    async def raise_to(self, key: str, value: int) -> None:
        """Set the integer at key to max(current, value); replayed later if Redis is away."""
        key = self._p + key
        if await self._ready():
            try:
                await self._raise(keys=[key], args=[value])
                return
            except Exception as exc:
                self._fail(exc)
        self._pending_raise[key] = max(value, self._pending_raise.get(key, 0))

    async def get_int(self, key: str) -> int | None:
        """The integer at key (0 if absent); None when Redis is unavailable."""
        if not await self._ready():
            return None
        try:
            raw = await self._client.get(self._p + key)
        except Exception as exc:
            self._fail(exc)
            return None
        return 0 if raw is None else int(raw)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception:
            log.debug("closing redis client failed", exc_info=True)
