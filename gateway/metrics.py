"""Prometheus metrics, served at `/metrics`."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
    "mcp_gateway_backend_failures", "Times a backend session was lost or failed to start", ["backend"],
    registry=REGISTRY,
)
HTTP_REJECTED = Counter(
    "mcp_gateway_http_rejected", "HTTP requests rejected before reaching a backend", ["reason"], registry=REGISTRY
)


def render() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _register_resilience() -> None:
    from gateway.resilience.telemetry import COLLECTOR

    REGISTRY.register(COLLECTOR)


_register_resilience()
