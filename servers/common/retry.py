"""Retry policy: how many attempts, how long to back off, and the bound on total waiting."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one request; reads retry 5xx and transport errors, writes never do."""

    max_attempts: int = 3
    """Attempts for a read hitting 5xx or transport errors (1 means no retry)."""
    max_rate_limit_attempts: int = 4
    """Attempts for any request answered 429 (the vendor did not process it)."""
    backoff_base: float = 0.25
    """First backoff in seconds; doubles on each attempt."""
    backoff_max: float = 8.0
    max_total_wait: float = 30.0
    """Total seconds one request may spend waiting on retries before giving up."""

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with a little jitter for the given 1-based attempt."""
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        return delay * (1 + random.random() * 0.1)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The `Retry-After` header as seconds (delta-seconds form), or None if absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None
