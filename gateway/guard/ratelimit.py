"""Per-client rate limits: token buckets in process, or shared by every replica through Redis."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("mcp_gateway.security")


class MemoryBuckets:
    """In-process token buckets."""

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, per_second: float, capacity: int) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        tokens, updated = self.buckets.get(key, (float(capacity), now))
        tokens = min(float(capacity), tokens + (now - updated) * per_second)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1 - tokens) / per_second


_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """Token buckets shared by every replica through Redis (one atomic Lua script per call)."""

    def __init__(self, url: str, prefix: str = "mcp-gateway") -> None:
        from gateway.resilience.redis_link import connect

        self.client = connect(url, timeout=1)  # a `redis+cluster://` URL: RedisCluster (one key: one slot)
        self.prefix = prefix  # `gateway.redis.prefix`: deployments sharing a Redis keep their own buckets
        self.script = self.client.register_script(_BUCKET_LUA)
        self.fallback = MemoryBuckets()
        self._warned = 0.0

    async def take(self, key: str, per_second: float, capacity: int) -> float:
        try:
            wait = await self.script(keys=[f"{self.prefix}:ratelimit:{{{key}}}"], args=[per_second, capacity])
            return float(wait)
        except Exception as error:  # Redis away: limit per replica rather than not at all
            if time.monotonic() - self._warned > 30:
                self._warned = time.monotonic()
                logger.warning("rate limits fall back to in-process buckets: redis: %s", error)
            return await self.fallback.take(key, per_second, capacity)


Buckets = MemoryBuckets | RedisBuckets


def make_buckets(url: str | None, prefix: str = "mcp-gateway") -> Buckets:
    return RedisBuckets(url, prefix) if url else MemoryBuckets()
