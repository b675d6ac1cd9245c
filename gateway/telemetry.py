"""OpenTelemetry traces for tool calls: one span per gateway stage.

    gateway.tools/call            (parent: the caller's W3C `traceparent` in the request `_meta`, if any)
    ├── gateway.route             resolve the exposed name, validate the arguments
    └── gateway.backend.request   the backend round trip (resilience wraps it); the SDK's
        └── MCP send tools/call   client span, which injects `traceparent` into the backend request `_meta`

Tracing is off unless configured: `configure()` installs the OTLP exporter when
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and tests call `enable()`
with their own provider. While off, `tracer` is None and each stage costs one global read and a
shared `nullcontext` (well under a microsecond per call; see tests/ops/test_tracing.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer

logger = logging.getLogger("mcp_gateway.telemetry")

TOOL_CALL = "gateway.tools/call"
ROUTE = "gateway.route"
BACKEND_REQUEST = "gateway.backend.request"

tracer: Tracer | None = None  # None: tracing is off, every helper below is a no-op
_NULL: AbstractContextManager[None] = nullcontext()
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


def call_span(name: str, meta: Mapping[str, Any] | None) -> AbstractContextManager[Span | None]:
    """The root span of one tool call, child of the caller's `traceparent` when the `_meta` carries one."""
    current = tracer
    if current is None:
        return _NULL
    parent = None
    if meta and "traceparent" in meta:
        try:
            parent = extract(meta)
        except (TypeError, ValueError):
            parent = None
        if parent is not None and not trace.get_current_span(parent).get_span_context().is_valid:
            parent = None
    # The entry span is SERVER kind; under FastMCP's own server span (the framework path) it is INTERNAL.
    entry = parent is not None or not trace.get_current_span().get_span_context().is_valid
    return current.start_as_current_span(
        TOOL_CALL, context=parent, kind=SpanKind.SERVER if entry else SpanKind.INTERNAL,
        attributes={"mcp.method.name": "tools/call", "gen_ai.tool.name": name},
    )


def stage(name: str) -> AbstractContextManager[Span | None]:
    """A child span for one stage of the call, or a shared no-op."""
    current = tracer
    if current is None:
        return _NULL
    return current.start_as_current_span(name)


def outcome(span: Span | None, result: str, **attributes: str) -> None:
    """Record a stage's outcome on its span (no-op while tracing is off)."""
    if span is None:
        return
    span.set_attribute("mcp_gateway.outcome", result)
    for key, value in attributes.items():
        span.set_attribute(f"mcp_gateway.{key}", value)
    if result != "ok":
        span.set_status(StatusCode.ERROR, result)
