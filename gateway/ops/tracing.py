"""OpenTelemetry traces for tool calls: one span per gateway stage.

    gateway.tools/call            (parent: the caller's W3C `traceparent` in the request `_meta`, if any)
    ├── gateway.route             resolve the exposed name, validate the arguments
    └── gateway.backend.request   the backend round trip (resilience wraps it); its context goes to the
        │                         backend as `traceparent` in the request `_meta`
        └── MCP send tools/call   the SDK's client span (HTTP/SSE backends, when the global provider records)

Tracing is off unless configured: `configure()` installs the OTLP exporter when
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and tests call `enable()`
with their own provider. While off, `tracer` is None and `Hub.call_tool` pays one module attribute read
and an `is None` test for it (tens of nanoseconds; tests/ops/test_tracing.py measures it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import Span, StatusCode, Tracer

logger = logging.getLogger("mcp_gateway.telemetry")

TOOL_CALL = "gateway.tools/call"
ROUTE = "gateway.route"
BACKEND_REQUEST = "gateway.backend.request"
BACKEND_ATTRIBUTE = "mcp_gateway.backend"
OUTCOME_ATTRIBUTE = "mcp_gateway.outcome"

tracer: Tracer | None = None  # None: tracing is off and Hub.call_tool never looks further
_provider: Any = None


def enable(provider: trace.TracerProvider | None = None) -> Tracer:
    """Trace tool calls with `provider` (default: the global one)."""
    global tracer
    from gateway import __version__

    tracer = trace.get_tracer("mcp_gateway", __version__, tracer_provider=provider)
    return tracer


def disable() -> None:
    global tracer
    tracer = None


def exporter_configured(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Install the OTLP/HTTP exporter when the standard OTEL_* variables ask for one; True if tracing is on.

    The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout) itself; the service name is
    OTEL_SERVICE_NAME, default `mcp-gateway`. The provider is made global, so FastMCP's and the MCP SDK's
    own spans are exported too and nest under the gateway's.
    """
    global _provider
    if not exporter_configured(environ):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    environ = os.environ if environ is None else environ
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "mcp-gateway"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    enable()
    logger.info("tracing: exporting spans over OTLP/HTTP")
    return True


def shutdown() -> None:
    """Flush the exporter (bounded by its own timeouts) before the process exits."""
    if _provider is not None:
        _provider.shutdown()


def parent_context(meta: Mapping[str, Any] | None) -> Any:
    """The caller's trace context from a request `_meta`, or None to nest under the current span."""
    if not meta or "traceparent" not in meta:
        return None
    try:
        parent = extract(meta)
    except (TypeError, ValueError):
        return None
    return parent if trace.get_current_span(parent).get_span_context().is_valid else None


def set_outcome(span: Span, result: str) -> None:
    span.set_attribute(OUTCOME_ATTRIBUTE, result)
    if result != "ok":
        span.set_status(StatusCode.ERROR, result)
