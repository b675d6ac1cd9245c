"""Prometheus view of the resilience layer, read at scrape time.

The call path bumps plain integers on its own objects; this collector turns them into metric families
only when `/metrics` is scraped, so a cache hit pays for no label lookup or lock.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.resilience.breakers import STATE_CODE

if TYPE_CHECKING:
    from gateway.resilience.core import Resilience


class ResilienceCollector(Collector):
    """The metric families of one `Resilience` (the hub's), built when `/metrics` is scraped."""

    def __init__(self, resilience: Resilience[Any]) -> None:
        self._resilience = weakref.ref(resilience)

    def collect(self) -> Iterator[Metric]:
        res = self._resilience()
        if res is None:
            return
        state = GaugeMetricFamily(
            "mcp_gateway_breaker_state", "Breaker state: 0 closed, 1 half-open, 2 open", labels=["breaker"]
        )
        opened = CounterMetricFamily("mcp_gateway_breaker_opened", "Times the breaker opened", labels=["breaker"])
        failures = CounterMetricFamily(
            "mcp_gateway_breaker_failures", "Backend failures counted by the breaker", labels=["breaker"]
        )
        rejected = CounterMetricFamily(
            "mcp_gateway_breaker_rejected", "Calls failed fast by an open breaker", labels=["breaker"]
        )
        for name, breaker in res.breakers.by_name.items():
            state.add_metric([name], STATE_CODE.get(breaker.storage.state, 0))
            opened.add_metric([name], breaker.transitions.get("open", 0))
            failures.add_metric([name], breaker.failures)
            rejected.add_metric([name], breaker.rejected)
        yield from (state, opened, failures, rejected)
        active = GaugeMetricFamily("mcp_gateway_bulkhead_active", "Calls in flight per backend", labels=["backend"])
        queued = GaugeMetricFamily("mcp_gateway_bulkhead_queued", "Calls waiting for a slot", labels=["backend"])
        refused = CounterMetricFamily(
            "mcp_gateway_bulkhead_rejected", "Calls refused as overloaded", labels=["backend"]
        )
        for name, bulkhead in res.bulkheads.items():
            active.add_metric([name], bulkhead.active)
            queued.add_metric([name], bulkhead.queued)
            refused.add_metric([name], bulkhead.rejected)
        yield from (active, queued, refused)
        yield CounterMetricFamily("mcp_gateway_retries", "Backend call attempts repeated", value=res.retries)
        cache = res.cache
        lookups = CounterMetricFamily("mcp_gateway_cache_lookups", "Cache lookups by result", labels=["result"])
        lookups.add_metric(["hit_l1"], cache.hits)
        lookups.add_metric(["hit_l2"], cache.l2_hits)
        lookups.add_metric(["miss"], cache.misses)
        lookups.add_metric(["stale"], cache.stale)
        yield lookups
        yield CounterMetricFamily(
            "mcp_gateway_cache_invalidations", "Server-wide invalidations by writes", value=cache.invalidations
        )
        yield GaugeMetricFamily("mcp_gateway_cache_entries", "L1 cache entries", value=len(cache.l1.entries))
        yield GaugeMetricFamily("mcp_gateway_cache_bytes", "L1 cache bytes", value=cache.l1.bytes)
        link = res.link
        up = 0 if link is None else int(link.up and link.listening)
        yield GaugeMetricFamily("mcp_gateway_redis_up", "1 while Redis (L2, shared breakers) is in use", value=up)
        if link is not None:
            yield CounterMetricFamily("mcp_gateway_redis_errors", "Redis operations that failed", value=link.errors)
