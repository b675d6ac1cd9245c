"""Logs come in one format (issue 16, point 8): with `MCP_GATEWAY_LOG_FORMAT=json` every stderr line is a
JSON object and one backend message is one record (FastMCP's console handler wrapped it over several)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config


def test_json_logs_one_record_per_backend_message(tmp_path: Path) -> None:
    gateway = GatewayProcess(
        write_config(tmp_path, {"local": stdio_echo_server()}),
        MCP_GATEWAY_LOG_FORMAT="json",
        MCP_GATEWAY_LOG_LEVEL="INFO",
        FASTMCP_LOG_LEVEL="INFO",
    )
    log = gateway.stop()
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is JSON
    backend = [r["message"] for r in records if r.get("logger", "").startswith("mcp_gateway.backend.local")]
    starting = [message for message in backend if "Starting MCP server" in message]
    assert starting, backend
    assert all("transport 'stdio'" in message for message in starting), backend  # not split over two records
