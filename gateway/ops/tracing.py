"""OpenTelemetry traces for tool calls: one span per gateway stage, as hooks on the hub's one call path.

    gateway.tools/call            (parent: the caller's W3C `traceparent` in the request `_meta`, if any)
    ├── gateway.route             resolve the exposed name, validate the arguments
    └── gateway.backend.request   the backend round trip (resilience wraps it); its context goes to the
        │                         backend as `traceparent` in the request `_meta`
        └── MCP send tools/call   the SDK's client span (HTTP/SSE backends, when the global provider records)

`Hub.call_tool` runs its stages inside `hooks.call(...)` and `hooks.stage(...)`. With tracing off the hooks
are `NO_TRACING`, whose spans do nothing; with tracing on they are a `CallTracer`. `configure()` builds one
(with the OTLP exporter) when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set; tests build
one on their own provider. The tracer is handed to the hub: there is no module-level tracer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind, StatusCode

logger = logging.getLogger("mcp_gateway.telemetry")

TOOL_CALL = "gateway.tools/call"
ROUTE = "gateway.route"
BACKEND_REQUEST = "gateway.backend.request"
BACKEND_ATTRIBUTE = "mcp_gateway.backend"
OUTCOME_ATTRIBUTE = "mcp_gateway.outcome"
CACHE_HIT_ATTRIBUTE = "mcp_gateway.cache_hit"


class Stage(Protocol):
    """One observed stage of a call (a span, or nothing)."""

    def backend(self, name: str) -> None:
        """The call was routed to backend `name`."""

    def ended(self, outcome: str, *, cache_hit: bool = False) -> None:
        """The stage ended with `outcome` (`ok`, `unknown_tool`, `timeout`, ...)."""


class CallHooks(Protocol):
    """What the hub's call path reports its stages to."""

    def call(self, name: str, meta: Mapping[str, Any] | None) -> AbstractContextManager[Stage]:
        """Around the whole call of tool `name`; `meta` is the request `_meta` (the caller's trace context)."""
        ...

    def stage(self, name: str, backend: str | None = None) -> AbstractContextManager[Stage]:
        """Around one stage (`ROUTE`, `BACKEND_REQUEST`), inside `call`."""
        ...

    def propagate(self, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        """The backend request's `_meta`, with the current trace context added when tracing."""
        ...


class _Untraced:
    """Tracing off: every hook is the same object, which does nothing."""

    def __enter__(self) -> _Untraced:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def backend(self, name: str) -> None:
        pass

    def ended(self, outcome: str, *, cache_hit: bool = False) -> None:
        pass

    def call(self, name: str, meta: Mapping[str, Any] | None) -> _Untraced:
        return self

    def stage(self, name: str, backend: str | None = None) -> _Untraced:
        return self

    def propagate(self, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        return meta  # the caller's own `traceparent`, if any, passes through


NO_TRACING = _Untraced()


class _SpanStage:
    def __init__(self, span: Span) -> None:
        self.span = span

    def backend(self, name: str) -> None:
        self.span.set_attribute(BACKEND_ATTRIBUTE, name)

    def ended(self, outcome: str, *, cache_hit: bool = False) -> None:
        self.span.set_attribute(OUTCOME_ATTRIBUTE, outcome)
        if cache_hit:
            self.span.set_attribute(CACHE_HIT_ATTRIBUTE, True)
        if outcome != "ok":
            self.span.set_status(StatusCode.ERROR, outcome)


class CallTracer:
    """Spans for the stages of every tool call, from `provider` (default: the global one)."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        from gateway import __version__

        self.provider = provider
        self.tracer = trace.get_tracer("mcp_gateway", __version__, tracer_provider=provider)

    @contextmanager
    def call(self, name: str, meta: Mapping[str, Any] | None) -> Iterator[_SpanStage]:
        parent = parent_context(meta)
        # The entry span is SERVER kind; under FastMCP's own server span (the framework path) it is INTERNAL.
        entry = parent is not None or not trace.get_current_span().get_span_context().is_valid
        with self.tracer.start_as_current_span(
            TOOL_CALL,
            context=parent,
            kind=SpanKind.SERVER if entry else SpanKind.INTERNAL,
            attributes={"mcp.method.name": "tools/call", "gen_ai.tool.name": name},
        ) as span:
            yield _SpanStage(span)

    @contextmanager
    def stage(self, name: str, backend: str | None = None) -> Iterator[_SpanStage]:
        attributes = {BACKEND_ATTRIBUTE: backend, "mcp.method.name": "tools/call"} if backend is not None else None
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            yield _SpanStage(span)

    def propagate(self, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        # W3C `traceparent` (and `tracestate`) of the current span in the backend request `_meta`, the MCP
        # convention: stdio backends' calls skip the SDK dispatcher (backends/pipe.py), which would do it.
        meta = dict(meta) if meta else {}
        inject(meta)
        return meta

    def shutdown(self) -> None:
        """Flush the exporter (bounded by its own timeouts) before the process exits."""
        from opentelemetry.sdk.trace import TracerProvider

        if isinstance(self.provider, TracerProvider):
            self.provider.shutdown()


def exporter_configured(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure(environ: Mapping[str, str]) -> CallTracer | None:
    """A tracer exporting over OTLP/HTTP when the standard OTEL_* variables ask for one, else None.

    The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout) itself; the service name is
    OTEL_SERVICE_NAME, default `mcp-gateway`. The provider is made global, so FastMCP's and the MCP SDK's
    own spans are exported too and nest under the gateway's.
    """
    if not exporter_configured(environ):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "mcp-gateway"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    logger.info("tracing: exporting spans over OTLP/HTTP")
    return CallTracer(provider)


def parent_context(meta: Mapping[str, Any] | None) -> Context | None:
    """The caller's trace context from a request `_meta`, or None to nest under the current span."""
    if not meta or "traceparent" not in meta:
        return None
    try:
        parent = extract(meta)
    except (TypeError, ValueError):
        return None
    return parent if trace.get_current_span(parent).get_span_context().is_valid else None
