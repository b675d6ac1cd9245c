"""Logs come in one format (issue 16, point 8): every line the gateway writes to stderr is in the chosen
format, text or JSON: its own records, FastMCP's and the SDK's, the in-process servers', the audit lines
and the stdio backends' stderr (each backend message one record, with the server's name; a multi-line
message or traceback one record, not one per line). A call that fails only for missing credentials is one
warning naming the vendor and the variable, not FastMCP's `Error calling tool`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.gateway.security.conftest import rpc
from tests.helpers.procs import ROOT, GatewayProcess, stdio_echo_server, write_config

TEXT_HEAD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+( \[[^]]+\])?: "
)
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception): ")


def _servers() -> dict[str, Any]:
    noisy = stdio_echo_server()
    noisy["args"] = ["-m", "tests.backends.noisy"]
    hubspot = {"command": "python", "args": ["-m", "servers.hubspot"], "env": {"HUBSPOT_ACCESS_TOKEN": ""}}
    return {
        "local": stdio_echo_server(),
        "noisy": noisy,
        "hubspot": {**hubspot, "inProcess": True},  # in the gateway's process
        "crm": {**hubspot, "env": {"HUBSPOT_ACCESS_TOKEN": "", "PYTHONPATH": str(ROOT)}},  # a child process
    }


def _run(tmp_path: Path, log_format: str) -> str:
    """A gateway logging in `log_format` (audit to stderr) through calls that log multi-line messages and
    a call refused for missing credentials, in process and in a child; its whole stderr."""
    gateway = GatewayProcess(
        write_config(tmp_path, _servers()),
        MCP_GATEWAY_LOG_FORMAT=log_format,
        MCP_GATEWAY_LOG_LEVEL="INFO",
        FASTMCP_LOG_LEVEL="INFO",
    )
    try:
        for tool in ("noisy_shout", "noisy_crash", "hubspot_search_contacts", "crm_search_contacts", "local_echo"):
            arguments = {"text": "hi"} if tool == "local_echo" else {}
            assert rpc(gateway, "tools/call", {"name": tool, "arguments": arguments}).status_code == 200
    finally:
        log = gateway.stop()
    return log


def test_json_logs_every_line_a_record_and_one_record_per_backend_message(tmp_path: Path) -> None:
    log = _run(tmp_path, "json")
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records), records
    noisy = [r for r in records if r["logger"] == "mcp_gateway.backend.noisy"]
    assert all(r["server"] == "noisy" for r in noisy)
    [logged] = [r for r in noisy if "lookup failed" in r["message"]]  # the message and its traceback: one record
    assert logged["level"] == "ERROR"
    assert "Traceback (most recent call last):" in logged["message"]
    assert "ValueError: the lookup table is empty" in logged["message"]
    [two_lines] = [r for r in noisy if "first line of one message" in r["message"]]
    assert "and its indented second line" in two_lines["message"]
    [crashed] = [r for r in noisy if "Error calling tool 'crash'" in r["message"]]
    assert "RuntimeError: noisy crashed" in crashed["message"]
    assert not [r for r in noisy if r["message"].lstrip().startswith(("File ", "Traceback", "ValueError"))]
    # the built-in servers log JSON records under the gateway: relayed with their level and logger
    starting = [r for r in records if r["logger"] == "mcp_gateway.backend.local" and "Starting" in r["message"]]
    assert starting and all("transport 'stdio'" in r["message"] for r in starting)
    audit = [r for r in records if r["logger"] == "mcp_gateway.audit"]
    assert {r["tool"] for r in audit} >= {"noisy_shout", "local_echo"}
    _one_warning_per_missing_credential(records)


def test_text_logs_every_line_in_the_gateways_format(tmp_path: Path) -> None:
    log = _run(tmp_path, "text")
    lines = [line for line in log.splitlines() if line.strip()]
    for line in lines:
        assert not line.startswith("{"), f"a raw JSON line: {line}"
        continuation = line[0] in " \t" or line.startswith("Traceback") or EXCEPTION_LINE.match(line)
        assert TEXT_HEAD.match(line) or continuation, f"a line not in the gateway's format: {line!r}"
    assert any(" INFO mcp_gateway.audit" in line and "tools/call local_echo: ok" in line for line in lines)
    # a backend's messages carry its name; a multi-line one continues under its first line
    at = next(i for i, line in enumerate(lines) if "ERROR mcp_gateway.backend.noisy: ERROR:noisy:lookup failed" in line)
    assert lines[at + 1] == "Traceback (most recent call last):"
    assert any("INFO mcp_gateway.backend.noisy: noisy: first line of one message" in line for line in lines)
    assert any("INFO mcp_gateway.backend.local: " in line and "Starting MCP server" in line for line in lines)
    records = [
        {"level": head[1], "message": line[head.end() :], "logger": line.split()[3].rstrip(":")}
        for line in lines
        if (head := TEXT_HEAD.match(line))
    ]
    _one_warning_per_missing_credential(records)


def _one_warning_per_missing_credential(records: list[dict[str, Any]]) -> None:
    """The in-process server's refused call and the child's: each one warning naming the vendor and the
    variable; no `Error calling tool` for them."""
    missing = [r for r in records if "HUBSPOT_ACCESS_TOKEN" in r["message"]]
    assert [r["level"] for r in missing] == ["WARNING", "WARNING"], missing
    assert all("HubSpot" in r["message"] and "missing credentials" in r["message"] for r in missing)
    assert sorted(r["logger"] for r in missing) == ["mcp_gateway.backend.crm", "servers.credentials"], missing
    assert not [r for r in records if "Error calling tool 'search_contacts'" in r["message"]]
