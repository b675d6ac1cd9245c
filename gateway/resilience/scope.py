"""A backend's name in Redis: its server name and a short digest of the backend that answers under it.

Two deployments sharing one Redis (and `gateway.redis.prefix`) may both name a server `ai_memory` while
their entries start different processes or reach different URLs; keyed by the server name alone they would
serve each other's cached results, invalidate each other's caches and open each other's breakers. So
every Redis name the resilience layer builds for a server (cache entries and generation, breaker state,
the `gen` and `breaker` events) uses `<server>~<digest>`, the digest (12 hex digits of BLAKE2b) taken
over what decides which backend answers: `command`, `args`, `cwd`, `env` (after `${VAR}` expansion),
`url` and `headers`. Gateway-side fields (`tools` overrides, `clientScopedArguments`, `statusTool`,
`namespace`, `timeout`, ...) are left out: replicas of one deployment with the same entry share every key
and event, whatever they tune on their side.
"""

from __future__ import annotations

import hashlib
import json

from gateway.config.loader import ServerConfig

IDENTITY_FIELDS = ("command", "args", "cwd", "env", "url", "headers")


def redis_name(name: str, server: ServerConfig) -> str:
    """`<name>~<digest of the backend's identity>`: the same for every replica with the same entry."""
    identity = {field: getattr(server, field) for field in IDENTITY_FIELDS}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{name}~{hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()}"
