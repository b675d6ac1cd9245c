"""Bounded, jittered exponential backoff for tools that are safe to repeat.

Not tenacity: the loop is a dozen lines in `core.py`, it must consult the breaker between attempts and
hand the slot back to the bulkhead while it sleeps, and the first attempt (almost every call) must cost
nothing. tenacity's `AsyncRetrying` builds its state objects per call; what it would add here is this
function.
"""

from __future__ import annotations

import random

from gateway.config.resilience import RetrySettings


def backoff(settings: RetrySettings, attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1): "equal jitter", uniform between
    half and all of `initial_backoff * 2**(attempt-1)` capped at `max_backoff`, so replicas retrying the
    same backend spread out but never hammer it back-to-back."""
    ceiling = min(settings.max_backoff, settings.initial_backoff * (2 ** (attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)
