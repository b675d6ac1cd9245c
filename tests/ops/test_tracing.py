"""Tool-call traces: one span per gateway stage, linked to the caller's trace and propagated to the backend;
and what the stage helpers cost while tracing is off."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.config.loader import parse_config
from gateway.ops import tracing
from gateway.routing.hub import Hub
from tests.helpers.procs import ROOT, module_over_http

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


@pytest.fixture(scope="module")
def meta_backend_url() -> Iterator[str]:
    """tests.ops.meta_backend over Streamable HTTP."""
    with module_over_http("tests.ops.meta_backend") as url:
        yield url


@contextmanager
def traced(hub: Hub) -> Iterator[InMemorySpanExporter]:
    """`hub` tracing its calls into memory for the duration."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hub.tracer = tracing.CallTracer(provider)
    try:
        yield exporter
    finally:
        hub.tracer = tracing.NO_TRACING
        provider.shutdown()


@pytest.fixture
def spans(hub: Hub) -> Iterator[InMemorySpanExporter]:
    with traced(hub) as exporter:
        yield exporter


@pytest.fixture(params=["http", "stdio"])
async def hub(request: pytest.FixtureRequest, meta_backend_url: str) -> AsyncIterator[Hub]:
    """A hub whose `remote` backend is the meta backend over Streamable HTTP, or as a stdio child."""
    import anyio

    if request.param == "http":
        server: dict[str, object] = {"url": meta_backend_url}
    else:
        server = {"command": sys.executable, "args": ["-m", "tests.ops.meta_backend"], "env": {"PYTHONPATH": str(ROOT)}}
    hub = Hub(parse_config({"mcpServers": {"remote": server}}, "test"))
    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        assert hub.by_name["remote"].state == "up"
        yield hub
        group.cancel_scope.cancel()


async def test_tool_call_has_stage_spans_under_the_callers_trace(hub: Hub, spans: InMemorySpanExporter) -> None:
    result = await hub.call_tool("remote_meta", {}, meta={"traceparent": TRACEPARENT})
    assert not result.get("isError"), result
    finished = {span.name: span for span in spans.get_finished_spans()}
    call = finished[tracing.TOOL_CALL]
    route = finished[tracing.ROUTE]
    request = finished[tracing.BACKEND_REQUEST]
    # One trace, the caller's; the call span's parent is the caller's span.
    for span in (call, route, request):
        assert format(span.context.trace_id, "032x") == CLIENT_TRACE
    assert call.parent is not None and format(call.parent.span_id, "016x") == CLIENT_SPAN
    assert call.kind == SpanKind.SERVER
    assert route.parent.span_id == call.context.span_id  # type: ignore[union-attr]
    assert request.parent.span_id == call.context.span_id  # type: ignore[union-attr]
    assert call.attributes["gen_ai.tool.name"] == "remote_meta"  # type: ignore[index]
    assert request.attributes["mcp_gateway.backend"] == "remote"  # type: ignore[index]
    assert call.attributes["mcp_gateway.outcome"] == "ok"  # type: ignore[index]
    # The backend got a traceparent in the request _meta: same trace, a gateway span as parent.
    received = result["structuredContent"]["traceparent"]
    version, trace_id, parent_id, _flags = received.split("-")
    assert (version, trace_id) == ("00", CLIENT_TRACE)
    gateway_span_ids = {format(span.context.span_id, "016x") for span in spans.get_finished_spans()}
    assert parent_id in gateway_span_ids and parent_id != CLIENT_SPAN
    sdk_send = [s for s in spans.get_finished_spans() if s.name.startswith("MCP send")]
    expected_parent = sdk_send[0] if sdk_send else request  # the SDK's own client span, when its provider records
    assert parent_id == format(expected_parent.context.span_id, "016x")


async def test_a_call_without_a_caller_trace_starts_one(hub: Hub, spans: InMemorySpanExporter) -> None:
    result = await hub.call_tool("remote_meta", {})
    finished = {span.name: span for span in spans.get_finished_spans()}
    call = finished[tracing.TOOL_CALL]
    assert call.parent is None
    assert result["structuredContent"]["traceparent"].split("-")[1] == format(call.context.trace_id, "032x")


async def test_failed_stage_is_marked_on_its_span(hub: Hub, spans: InMemorySpanExporter) -> None:
    await hub.call_tool("remote_nope", {})
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished[tracing.ROUTE].status.status_code == StatusCode.ERROR
    assert finished[tracing.TOOL_CALL].attributes["mcp_gateway.outcome"] == "unknown_tool"  # type: ignore[index]
    assert tracing.BACKEND_REQUEST not in finished


async def test_tracing_off_passes_the_callers_traceparent_through(hub: Hub) -> None:
    assert hub.tracer is tracing.NO_TRACING
    result = await hub.call_tool("remote_meta", {}, meta={"traceparent": TRACEPARENT})
    assert result["structuredContent"]["traceparent"] == TRACEPARENT


def _fake_hub() -> Hub:
    """A hub with one routed tool and a backend round trip that costs nothing: only the gateway's own work."""
    config = parse_config({"mcpServers": {"remote": {"url": "http://127.0.0.1:9/mcp"}}}, "test")
    hub = Hub(config)
    backend = hub.by_name["remote"]
    backend.state = "up"
    backend.tools = [{"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]
    hub.catalog.rebuild(hub.backends)

    async def forward(call: object, timeout: float | None) -> tuple[dict, str]:
        return {"content": [{"type": "text", "text": "hi"}]}, "ok"

    hub.resilience.forward = forward
    return hub


async def _per_call(hub: Hub, iterations: int) -> float:
    meta = {"traceparent": TRACEPARENT}
    arguments = {"text": "hi"}
    began = time.perf_counter()
    for _ in range(iterations):
        await hub.call_tool("remote_echo", arguments, meta=meta)
    return (time.perf_counter() - began) / iterations


async def test_noop_tracing_cost_per_call(capsys: pytest.CaptureFixture[str]) -> None:
    hub = _fake_hub()
    assert hub.tracer is tracing.NO_TRACING
    await _per_call(hub, 500)  # warm up
    off = min([await _per_call(hub, 5000) for _ in range(3)])
    with traced(hub) as exporter:
        on = min([await _per_call(hub, 1000) for _ in range(3)])
    assert len(exporter.get_finished_spans()) == 3 * 3000  # the calls were traced, three spans each
    with capsys.disabled():
        print(
            f"\n  hub.call_tool without the backend: tracing off {off * 1e6:.1f} us/call, "
            f"on (3 spans recorded in memory) {on * 1e6:.1f} us/call"
        )
    assert on > off
