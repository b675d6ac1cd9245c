"""Two-level result cache: L1 in-process (bounded by entries and bytes), L2 in Redis (shared by replicas).

Keys: server, tool, canonical JSON of the arguments and the caller's identity (left out for tools
configured `shared`). In Redis a server goes by its backend's name (`gateway.resilience.scope`: the server
name and a digest of its entry), so replicas of one deployment share entries and generations and other
deployments on the same Redis with a different backend under the same server name never do:
`<prefix>:c:{<server>~<digest>}:<key digest>` and `<prefix>:gen:{<server>~<digest>}`.

Each server has a *generation*; an entry is valid only under the generation it was stored with, so a write
to server S invalidates all of S's entries at once by changing the generation: in this replica at once (a
dict assignment), in the others through Redis (the `gen` key is read together with every L2 entry, and the
change is published so their L1 drops too).

Generations are increasing integers (Redis computes the next one atomically, above both its own value and
the writer's) and a replica only ever moves to a higher one. So a Redis flushed or restored from an older
snapshot, whose `gen` key is back at an old value, cannot revive the entries stored under it: every replica
that still knows a higher generation ignores the old one and writes its own back.

An L1 hit is a dict lookup, a generation compare and a shallow copy; it never awaits. Entries are kept
`stale_grace` seconds past their TTL so that a failing backend can be answered with the last good result.
An L1 miss reads the generation and the entry in one MGET, batched with the other lookups of the same loop
turn (`RedisLink.read`); an L2 hit is promoted into L1 for the rest of its freshness.

The backend's own cache hints on a tool result (2026-07-28 `ttlMs`, `cacheScope`) bound what is kept:
`ttlMs` 0 (or malformed) is never stored, a positive one caps the entry's freshness, and a hit tells the
client only the freshness left (`ttlMs` counts down with the entry's age). A `private` result is never kept
under a key shared by every caller (tools configured `shared`): it is stored under the caller's identity,
and from then on that tool is keyed per caller in this replica.

Why not FastMCP's `ResponseCachingMiddleware` and the py-key-value-aio stores under it: the middleware runs
only on the FastMCP path, which the hot path bypasses; the stores are async on every get (an L1 hit would
await), validate a pydantic model per read, drop entries at their TTL (no stale-if-error), bound memory by
entry count only, and offer no generation read in the same round trip as the entry.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gateway.config.resilience import CacheSettings
from gateway.ops import codec
from gateway.resilience.policy import ToolPolicy

if TYPE_CHECKING:  # redis-py loads only when Redis is configured (`Resilience` makes the link)
    from gateway.resilience.redis_link import RedisLink

CACHE_META = "mcp-gateway/cache"
TTL_HINT, SCOPE_HINT = "ttlMs", "cacheScope"  # a result's 2026-07-28 cache hints
SHARED = "*"  # the identity part of a key shared by every caller
Key = tuple[str, str, str, str]

# next generation: above what Redis holds and above what the writer knows (a restored Redis may be behind)
GEN_NEXT = """
local n = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') or 0, tonumber(ARGV[1])) + 1
redis.call('SET', KEYS[1], n)
return n
"""
# raise the generation in Redis to at least ARGV[1] (after a flush or a restore from an older snapshot)
GEN_RAISE = """
if (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


def gen_number(gen: str | None) -> int:
    try:
        return int(gen) if gen is not None else 0
    except ValueError:
        return 0  # a token from before generations were numbers


def hinted_ttl(result: dict[str, Any]) -> float | None:
    """The seconds a result's own `ttlMs` lets it be reused (0 for a malformed one), None without a hint."""
    ttl = result.get(TTL_HINT)
    if ttl is None:
        return None
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
        return 0.0
    return ttl / 1000


@dataclass(slots=True)
class Entry:
    gen: str
    fresh_until: float  # time.monotonic()
    stale_until: float
    size: int
    result: dict[str, Any]
    hint_until: float | None = None  # when the backend's `ttlMs` runs out (monotonic), if it sent one


def copy_result(result: dict[str, Any]) -> dict[str, Any]:
    """A copy the caller may change at the top level and in `_meta` (all the front paths ever touch)."""
    out = dict(result)
    meta = out.get("_meta")
    if meta is not None:
        out["_meta"] = dict(meta)
    return out


def served(entry: Entry, now: float) -> dict[str, Any]:
    """A copy of a fresh entry's result, its `ttlMs` (when the backend sent one) down to what is left."""
    out = copy_result(entry.result)
    if entry.hint_until is not None:
        out[TTL_HINT] = max(0, int((entry.hint_until - now) * 1000))
    return out


def stale_result(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out["_meta"] = {**(result.get("_meta") or {}), CACHE_META: "stale"}
    if TTL_HINT in out:
        out[TTL_HINT] = 0  # past its freshness: not to be reused downstream
    return out


class L1:
    """An LRU dict bounded by entry count and total bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: OrderedDict[Key, Entry] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def get(self, key: Key) -> Entry | None:
        return self.entries.get(key)

    def put(self, key: Key, entry: Entry) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self.entries[key] = entry
        self.bytes += entry.size
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = self.entries.popitem(last=False)
            self.bytes -= evicted.size
            self.evictions += 1

    def drop(self, key: Key) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size


class Cache:
    def __init__(self, settings: CacheSettings, link: RedisLink | None, scopes: dict[str, str]) -> None:
        self.l1 = L1(settings.max_entries, settings.max_bytes)
        self.link = link
        self.prefix = link.prefix if link is not None else "mcp-gateway"
        self.scopes = scopes  # server -> its backend's name in Redis (the owner keeps it up to date)
        self.gens: dict[str, str] = dict.fromkeys(scopes, "0")
        self._pending_gens: set[str] = set()
        self.private: set[tuple[str, str]] = set()  # (server, tool) configured shared that answered `private`
        self.hits = self.l2_hits = self.misses = self.stale = self.stores = self.too_big = 0
        self.invalidations = 0

    # ------------------------------------------------------------------ keys

    def key(self, policy: ToolPolicy, arguments: dict[str, Any] | None, identity: str | None) -> Key:
        try:
            canonical = orjson.dumps(arguments or {}, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:  # what orjson refuses (a lone surrogate, an integer past 64 bits)
            canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        shared = policy.shared and (policy.server, policy.tool) not in self.private
        return (policy.server, policy.tool, canonical, SHARED if shared else (identity or ""))

    def _l2_key(self, key: Key) -> str:
        digest = hashlib.blake2b("\0".join(key[1:]).encode(), digest_size=20).hexdigest()
        return f"{self.prefix}:c:{{{self.scopes.get(key[0], key[0])}}}:{digest}"

    def _gen_key(self, server: str) -> str:
        # `{server~digest}` is a Redis Cluster hash tag: a server's generation and entries share one slot, so
        # the L1-miss read below stays one MGET (one round trip) on a cluster too
        return f"{self.prefix}:gen:{{{self.scopes.get(server, server)}}}"

    def new_backend(self, server: str) -> None:
        """`server` was added or now names another backend (a reload changed its entry, so its Redis name
        changed): nothing kept here for it is the new backend's, nor is a result of the old one still on its
        way (the generation moves past it; Redis's generation under the new name is adopted or raised)."""
        for key in [key for key in self.l1.entries if key[0] == server]:
            self.l1.drop(key)
        self.private = {pair for pair in self.private if pair[0] != server}
        self._pending_gens.discard(server)
        self.gens[server] = str(gen_number(self.gens[server]) + 1) if server in self.gens else "0"

    # ------------------------------------------------------------------ reads

    def fresh(self, key: Key) -> dict[str, Any] | None:
        """The L1 hit path: a copy of a fresh, current-generation result, or None. Never awaits."""
        entry = self.l1.entries.get(key)
        if entry is None or entry.gen != self.gens.get(key[0]) or (now := time.monotonic()) >= entry.fresh_until:
            return None
        self.l1.entries.move_to_end(key)
        self.hits += 1
        return served(entry, now)

    def stale_l1(self, key: Key) -> Entry | None:
        entry = self.l1.get(key)
        if entry is None or entry.gen != self.gens.get(key[0]):
            return None
        return entry if time.monotonic() < entry.stale_until else None

    async def get_l2(self, key: Key) -> tuple[dict[str, Any] | None, Entry | None]:
        """(fresh result, stale entry) from Redis; (None, None) without Redis or when it is down."""
        if self.link is None:
            return None, None
        server = key[0]
        values = await self.link.read(self._gen_key(server), self._l2_key(key))
        if values is None:
            return None, None
        raw_gen, raw_entry = values
        gen = raw_gen.decode() if raw_gen is not None else "0"
        if gen != self.gens.get(server):  # (the same, on every lookup but the first after a change)
            if gen_number(gen) > gen_number(self.gens.get(server)):
                self.on_remote_gen(server, gen)  # another replica wrote (the publish may still be on its way)
            elif server in self.gens:
                await self._raise(server)  # Redis is behind us (flushed, restored): its entries are not ours
        if raw_entry is None:
            return None, None
        try:
            doc = codec.loads(raw_entry)
            if doc["g"] != self.gens.get(server):
                return None, None
            wall, mono = time.time(), time.monotonic()
            hint = doc.get("h")
            entry = Entry(
                doc["g"],
                mono + doc["f"] - wall,
                mono + doc["s"] - wall,
                len(raw_entry),
                doc["r"],
                None if hint is None else mono + hint - wall,
            )
        except (ValueError, KeyError, TypeError):
            return None, None  # not an entry of ours
        if wall < doc["f"]:
            self.l1.put(key, entry)
            self.l2_hits += 1
            return served(entry, mono), None
        return None, entry if wall < doc["s"] else None

    # ------------------------------------------------------------------ writes

    async def put(
        self, policy: ToolPolicy, key: Key, gen: str, result: dict[str, Any], identity: str | None = None
    ) -> None:
        """Store a successful result under the generation that was current when the call started, for no
        longer than its own `ttlMs` allows, and a `private` one only under the caller's `identity`."""
        if gen != self.gens.get(policy.server):
            return  # a write to this server happened meanwhile: this result may predate it
        ttl = policy.ttl
        hint = hinted_ttl(result)
        if hint is not None:
            if hint <= 0:
                return  # the backend said not to reuse it
            ttl = min(ttl, hint)
        if key[3] == SHARED and result.get(SCOPE_HINT) == "private":
            self.private.add((policy.server, policy.tool))  # its later calls are keyed per caller
            key = (key[0], key[1], key[2], identity or "")
        payload = codec.dumps(result)
        if len(payload) > policy.max_entry_bytes:
            self.too_big += 1
            return
        now_mono, wall = time.monotonic(), time.time()
        self.l1.put(
            key,
            Entry(
                gen,
                now_mono + ttl,
                now_mono + ttl + policy.stale_grace,
                len(payload),
                copy_result(result),
                None if hint is None else now_mono + hint,
            ),
        )
        self.stores += 1
        if self.link is not None:
            fresh, stale = wall + ttl, wall + ttl + policy.stale_grace
            hinted = b"" if hint is None else b',"h":%r' % (wall + hint)
            doc = b'{"g":%s,"f":%r,"s":%r%s,"r":%s}' % (orjson.dumps(gen), fresh, stale, hinted, payload)
            px = max(1, int((ttl + policy.stale_grace) * 1000))
            await self.link.run(self.link.client.set, self._l2_key(key), doc, None, px)

    async def invalidate(self, server: str) -> None:
        """Drop every entry of `server`: here at once, in Redis and the other replicas when it is reachable."""
        known = gen_number(self.gens.get(server))
        self.gens[server] = str(known + 1)
        self.invalidations += 1
        if self.link is None:
            return
        ok, n = await self.link.run(self.link.client.eval, GEN_NEXT, 1, self._gen_key(server), known)
        if ok and gen_number(str(n)) > known + 1:
            self.gens[server] = str(n)
        if not ok or not await self.link.publish(
            {"k": "gen", "n": self.scopes.get(server, server), "g": self.gens[server]}
        ):
            self._pending_gens.add(server)  # pushed when Redis is back

    async def _raise(self, server: str) -> bool:
        assert self.link is not None
        ok, _ = await self.link.run(self.link.client.eval, GEN_RAISE, 1, self._gen_key(server), self.gens[server])
        return ok

    def on_remote_gen(self, server: str, gen: str) -> None:
        """Move to another replica's generation, if it is newer than ours."""
        if server in self.gens and gen_number(gen) > gen_number(self.gens[server]):
            self.gens[server] = gen

    async def resync(self) -> None:
        """After (re)connecting to Redis: push generations changed while it was away, adopt the others'."""
        assert self.link is not None
        for server in list(self._pending_gens):
            # a fresh number above everything: another replica may have reached ours meanwhile
            known = gen_number(self.gens[server])
            ok, n = await self.link.run(self.link.client.eval, GEN_NEXT, 1, self._gen_key(server), known)
            if ok:
                self.gens[server] = str(max(gen_number(str(n)), known))
            if ok and await self.link.publish(
                {"k": "gen", "n": self.scopes.get(server, server), "g": self.gens[server]}
            ):
                self._pending_gens.discard(server)
        servers = list(self.gens)
        if not servers:
            return
        ok, values = await self.link.run(self.link.mget, *[self._gen_key(s) for s in servers])
        if ok:
            for server, raw in zip(servers, values, strict=True):
                remote = raw.decode() if raw is not None else "0"
                if gen_number(remote) > gen_number(self.gens[server]):
                    self.on_remote_gen(server, remote)
                elif remote != self.gens[server]:
                    await self._raise(server)

    def snapshot(self) -> dict[str, Any]:
        return {
            "l1": {
                "entries": len(self.l1.entries),
                "bytes": self.l1.bytes,
                "max_entries": self.l1.max_entries,
                "max_bytes": self.l1.max_bytes,
                "evictions": self.l1.evictions,
            },
            "hits": self.hits,
            "l2_hits": self.l2_hits,
            "misses": self.misses,
            "stale_served": self.stale,
            "stores": self.stores,
            "invalidations": self.invalidations,
        }
