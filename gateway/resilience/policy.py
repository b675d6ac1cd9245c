"""Per-tool resolution of the resilience settings, and what counts as a backend failure.

A `ToolPolicy` is computed once per catalog route (annotations + config) and cached until the catalog
changes, so the call path reads plain attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.config.resilience import (
    BreakerSettings,
    BulkheadSettings,
    CacheSettings,
    RetrySettings,
    ServerSettings,
    ToolSettings,
    merged,
)

STATUS_META = "mcp-gateway/upstream-status"
"""A structured marker a backend may put in an isError result's `_meta`: the upstream HTTP status."""


@dataclass(slots=True, frozen=True)
class ServerPolicy:
    """The merged settings of one server."""

    breaker: BreakerSettings
    retry: RetrySettings
    bulkhead: BulkheadSettings
    cache: CacheSettings
    tools: dict[str, ToolSettings]
    upstream_5xx: re.Pattern[str] | None
    upstream_429: re.Pattern[str] | None

    @classmethod
    def build(
        cls,
        breaker: BreakerSettings,
        retry: RetrySettings,
        bulkhead: BulkheadSettings,
        cache: CacheSettings,
        override: ServerSettings | None,
    ) -> ServerPolicy:
        b = merged(breaker, override.breaker if override else None)
        assert isinstance(b, BreakerSettings)
        return cls(
            breaker=b,
            retry=merged(retry, override.retry if override else None),  # type: ignore[arg-type]
            bulkhead=merged(bulkhead, override.bulkhead if override else None),  # type: ignore[arg-type]
            cache=merged(cache, override.cache if override else None),  # type: ignore[arg-type]
            tools=dict(override.tools) if override else {},
            upstream_5xx=_any_of(b.error_patterns),
            upstream_429=_any_of(b.rate_limit_patterns),
        )


def _any_of(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


@dataclass(slots=True, frozen=True)
class ToolPolicy:
    """Everything the call path needs to know about one exposed tool."""

    server: str
    tool: str
    breaker_name: str
    timeout: float | None  # None: the backend's own (server `timeout`, else `call_timeout`)
    retry: bool
    cacheable: bool
    ttl: float
    stale_grace: float
    shared: bool
    invalidates: bool
    max_entry_bytes: int
    server_policy: ServerPolicy


def resolve(server: str, tool: str, annotations: dict[str, Any], sp: ServerPolicy) -> ToolPolicy:
    """Combine a tool's MCP annotations with its server's and its own config."""
    own = sp.tools.get(tool) or ToolSettings()
    read_only = annotations.get("readOnlyHint") is True
    idempotent = annotations.get("idempotentHint") is True
    cache = sp.cache
    cacheable = own.cache if own.cache is not None else (cache.enabled and cache.read_only and read_only)
    invalidates = own.invalidates if own.invalidates is not None else (cache.invalidate_on_write and not read_only)
    per_tool = own.own_breaker if own.own_breaker is not None else sp.breaker.per_tool
    return ToolPolicy(
        server=server,
        tool=tool,
        breaker_name=f"{server}/{tool}" if per_tool else server,
        timeout=own.timeout,
        retry=own.retry if own.retry is not None else (read_only or idempotent),
        cacheable=bool(cacheable),
        ttl=own.ttl if own.ttl is not None else cache.ttl,
        stale_grace=cache.stale_grace,
        shared=own.shared if own.shared is not None else cache.shared,
        invalidates=invalidates and not cacheable,
        max_entry_bytes=cache.max_entry_bytes,
        server_policy=sp,
    )


def failure_kind(outcome: str, result: dict[str, Any], sp: ServerPolicy) -> str | None:
    """Which kind of backend failure a forwarded call's outcome is, or None if the backend is healthy.

    A tool's own error (bad input, not found, permission) is *not* a failure of the backend; only an error
    result that carries an upstream 5xx/429 (the `_meta` marker, or the server's error text) is.
    """
    if outcome == "ok":
        return None
    if outcome in ("timeout", "unavailable", "bad_response"):
        return outcome
    if outcome != "error" or not result.get("isError"):
        return None
    meta = result.get("_meta")
    status = meta.get(STATUS_META) if isinstance(meta, dict) else None
    if isinstance(status, int):
        if status == 429:
            return "upstream_429"
        return "upstream_5xx" if 500 <= status <= 599 else None
    text = " ".join(block.get("text", "") for block in result.get("content") or () if isinstance(block, dict))
    if sp.upstream_429 is not None and sp.upstream_429.search(text):
        return "upstream_429"
    if sp.upstream_5xx is not None and sp.upstream_5xx.search(text):
        return "upstream_5xx"
    return None
