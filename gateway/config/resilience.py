"""The resilience part of the `gateway` config section: breaker, retry, bulkhead, cache and Redis settings,
with per-server and per-tool overrides under `gateway.servers.<name>`.

Server sections are partial: only the keys given override the gateway-wide defaults (see `merged`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FailureKind = Literal["timeout", "unavailable", "bad_response", "upstream_5xx", "upstream_429"]
ALL_FAILURES: tuple[FailureKind, ...] = ("timeout", "unavailable", "bad_response", "upstream_5xx", "upstream_429")
_RETRY_ON: tuple[FailureKind, ...] = ("unavailable", "bad_response", "upstream_5xx", "upstream_429")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class BreakerSettings(_Strict):
    """A circuit breaker per backend (or per tool)."""

    enabled: bool = True
    fail_max: int = Field(default=5, ge=1, description="consecutive failures that open the breaker")
    reset_timeout: float = Field(default=30.0, gt=0, description="seconds open before a probe is let through")
    success_threshold: int = Field(default=1, ge=1, description="probe successes needed to close again")
    count: list[FailureKind] = Field(default_factory=lambda: list(ALL_FAILURES), description="what counts as failure")
    per_tool: bool = Field(default=False, description="one breaker per tool instead of per backend")
    error_patterns: list[str] = Field(
        default_factory=lambda: [r"\b(?:server error|HTTP|status) ?5\d\d\b", r"\b5\d\d (?:Service|Bad Gateway)"],
        description="regexes over an isError result's text that mean an upstream 5xx",
    )
    rate_limit_patterns: list[str] = Field(
        default_factory=lambda: [r"\(429\)", r"\brate.?limited\b", r"\bToo Many Requests\b"],
        description="regexes over an isError result's text that mean an upstream 429",
    )


class RetrySettings(_Strict):
    """Retries for tools that are safe to repeat (read-only or idempotent); writes are never retried."""

    attempts: int = Field(default=3, ge=1, le=10, description="total attempts, 1 = no retry")
    initial_backoff: float = Field(default=0.1, ge=0)
    max_backoff: float = Field(default=2.0, ge=0)
    max_total: float = Field(default=10.0, gt=0, description="no new attempt starts after this many seconds")
    on: list[FailureKind] = Field(
        default_factory=lambda: list(_RETRY_ON),
        description="failures worth another attempt (timeouts are not, by default: they used the whole budget)",
    )


class BulkheadSettings(_Strict):
    """A cap on concurrent calls to one backend, with a bounded wait queue."""

    max_concurrent: int = Field(default=64, ge=1)
    max_queue: int = Field(default=256, ge=0, description="calls that may wait for a slot; more are refused")
    queue_timeout: float = Field(default=10.0, gt=0, description="seconds a queued call waits before 'overloaded'")


class CacheSettings(_Strict):
    """Result caching for read-only tools (and tools marked cacheable)."""

    enabled: bool = True
    ttl: float = Field(default=60.0, gt=0, description="seconds a result is fresh")
    stale_grace: float = Field(default=300.0, ge=0, description="seconds past ttl a result may be served on error")
    read_only: bool = Field(default=True, description="cache every tool annotated readOnlyHint: true")
    invalidate_on_write: bool = Field(default=True, description="a non-read-only call drops the server's entries")
    shared: bool = Field(default=False, description="one entry for every caller (else keyed by identity)")
    max_entries: int = Field(default=10_000, ge=1, description="L1 (in-process) entries")
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="L1 (in-process) bytes")
    max_entry_bytes: int = Field(default=1024 * 1024, ge=1, description="larger results are not cached")


class RedisSettings(_Strict):
    """How the shared L2 cache and breaker state use Redis (`redis_url` or env REDIS_URL turns it on)."""

    timeout: float = Field(default=0.25, gt=0, description="seconds one Redis operation may take")
    retry_after: float = Field(default=2.0, gt=0, description="seconds Redis is bypassed after failing")
    fail_max: int = Field(default=2, ge=1, description="consecutive Redis failures before it is bypassed")
    max_connections: int = Field(default=32, ge=1)
    prefix: str = Field(default="mcp-gateway", min_length=1)


class ToolSettings(_Strict):
    """Per-tool overrides under `gateway.servers.<name>.tools.<tool>` (the backend's own tool name)."""

    timeout: float | None = Field(default=None, gt=0)
    cache: bool | None = Field(default=None, description="cache this tool (default: from readOnlyHint)")
    ttl: float | None = Field(default=None, gt=0)
    shared: bool | None = None
    retry: bool | None = Field(default=None, description="safe to repeat (default: readOnly/idempotent hints)")
    invalidates: bool | None = Field(default=None, description="drops the server's cache (default: not read-only)")
    own_breaker: bool | None = Field(default=None, description="a breaker of its own, apart from its backend's")


class ServerSettings(_Strict):
    """Per-server overrides under `gateway.servers.<name>`; each section only overrides the keys it gives."""

    breaker: BreakerSettings | None = None
    retry: RetrySettings | None = None
    bulkhead: BulkheadSettings | None = None
    cache: CacheSettings | None = None
    tools: dict[str, ToolSettings] = Field(default_factory=dict)


def merged(default: _Strict, override: _Strict | None) -> _Strict:
    """`default` with the keys explicitly set in `override` replaced."""
    if override is None:
        return default
    return default.model_copy(update=override.model_dump(exclude_unset=True))
