"""Prometheus metrics, served at `/metrics`."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()

CALLS = Counter(
    "mcp_gateway_tool_calls", "Tool calls by exposed tool and outcome", ["tool", "outcome"], registry=REGISTRY
)
LATENCY = Histogram(
    "mcp_gateway_tool_call_seconds",
    "Tool call latency through the gateway, by backend",
    ["backend"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
BACKEND_UP = Gauge("mcp_gateway_backend_up", "1 while the backend session is up", ["backend"], registry=REGISTRY)
BACKEND_RESTARTS = Counter(
    "mcp_gateway_backend_failures",
    "Times a backend session was lost or failed to start",
    ["backend"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(  # read from the hub's counters at scrape time (set_function), nothing per call
    "mcp_gateway_tool_calls_in_flight", "Tool calls waiting on a backend right now", ["backend"], registry=REGISTRY
)
TOOL_LATENCY = Histogram(
    "mcp_gateway_tool_seconds",
    "Tool call latency through the gateway, by exposed tool",
    ["tool"],
    buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 30),
    registry=REGISTRY,
)
BACKEND_STARTUP = Gauge(
    "mcp_gateway_backend_startup_seconds",
    "How long the backend's last successful start took (session open, handshake, lists)",
    ["backend"],
    registry=REGISTRY,
)
DRAINING = Gauge("mcp_gateway_draining", "1 once shutdown began: /ready answers 503", registry=REGISTRY)
HTTP_REJECTED = Counter(
    "mcp_gateway_http_rejected", "HTTP requests rejected before reaching a backend", ["reason"], registry=REGISTRY
)


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, cached: prometheus_client's `labels()` takes a lock and validates on every
    call (about 2 us here), the cached child is one dict lookup. Label sets are bounded by the catalog."""
    key = (id(metric), labels)  # the metrics are module-level: their ids are stable
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def render(*collectors: Collector) -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, with its content type: the registry's, then those
    of `collectors` (read at scrape time from the objects they watch, e.g. the hub's resilience layer)."""
    body = generate_latest(REGISTRY) + b"".join(generate_latest(collector) for collector in collectors)
    return body, CONTENT_TYPE_LATEST
