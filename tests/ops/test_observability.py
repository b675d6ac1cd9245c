"""JSON logs carry the request id, X-Request-Id is echoed, /metrics has the operational series."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from gateway.ops import logs
from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config


async def test_json_logs_and_request_ids(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    gateway = GatewayProcess(config, MCP_GATEWAY_LOG_FORMAT="json", MCP_GATEWAY_LOG_LEVEL="INFO")
    try:
        # An id the client sends is echoed; without one the gateway makes one per request.
        given = local_http.get(gateway.base + "/health", headers={"X-Request-Id": "probe-42"})
        assert given.headers["x-request-id"] == "probe-42"
        made = [local_http.get(gateway.base + "/health").headers["x-request-id"] for _ in range(2)]
        assert made[0] != made[1] and all(len(rid) == 16 for rid in made)
        unsafe = local_http.get(gateway.base + "/health", headers={"X-Request-Id": "bad id\twith spaces"})
        assert unsafe.headers["x-request-id"] != "bad id\twith spaces"  # not reflected: a new one is made
        # A failing call through the fast path logs a line with the caller's request id.
        transport = StreamableHttpTransport(gateway.base + "/mcp", headers={"X-Request-Id": "req-abc-123"})
        async with Client(transport) as client:
            result = await client.call_tool("local_nope", {}, raise_on_error=False)
            assert result.is_error
    finally:
        stderr = gateway.stop()
    lines = [line for line in stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    # Every record carries the standard keys, the audit log's too (with its own fields).
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records), records
    audit = [r for r in records if r["logger"] == "mcp_gateway.audit"]
    assert audit and all({"tool", "outcome", "client", "ms"} <= r.keys() for r in audit), audit
    assert any(r["tool"] == "local_nope" and r.get("request_id") == "req-abc-123" for r in audit), audit
    mine = [r for r in records if r.get("request_id") == "req-abc-123"]
    assert any("local_nope" in r["message"] and r["logger"] == "mcp_gateway.hub" for r in mine), records
    assert any(r["message"].startswith("backend local up") for r in records)
    # The backend's own stderr (FastMCP's banner line) arrives as records too.
    assert any(r["logger"] == "mcp_gateway.backend.local" and r.get("stream") == "stderr" for r in records), records


def test_json_formatter_carries_extra_fields_and_exceptions() -> None:
    formatter = logs.JsonFormatter()
    token = logs.request_id.set("rid-1")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.LogRecord("mcp_gateway.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
            import sys

            record.exc_info = sys.exc_info()
        record.backend = "slack"
        entry = json.loads(formatter.format(record))
    finally:
        logs.request_id.reset(token)
    assert entry["message"] == "failed here" and entry["request_id"] == "rid-1"
    assert entry["backend"] == "slack" and "ValueError: boom" in entry["exc"]


async def test_metrics_expose_operational_series(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    gateway = GatewayProcess(config)
    try:
        async with Client(StreamableHttpTransport(gateway.base + "/mcp")) as client:
            await client.call_tool("local_echo", {"text": "hi"})
        text = local_http.get(gateway.base + "/metrics").text
    finally:
        gateway.stop()
    assert 'mcp_gateway_tool_calls_in_flight{backend="local"} 0.0' in text
    assert 'mcp_gateway_tool_seconds_count{tool="local_echo"} 1.0' in text
    assert 'mcp_gateway_tool_calls_total{outcome="ok",tool="local_echo"} 1.0' in text
    series = 'mcp_gateway_backend_startup_seconds{backend="local"}'
    startup = [line for line in text.splitlines() if line.startswith(series)]
    assert startup and float(startup[0].split()[-1]) > 0
    assert "mcp_gateway_draining 0.0" in text
