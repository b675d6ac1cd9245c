"""A gateway with `gateway.auth` configured, real clients with tokens, and raw HTTP helpers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import SSETransport, StreamableHttpTransport

from gateway.auth.keys import hash_token
from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config

ALICE = "alice-0123456789abcdefghijklmnopqrstuvwxyz"
BOB = "bob-0123456789abcdefghijklmnopqrstuvwxyz"
LIMITED = "limited-0123456789abcdefghijklmnopqrstuvwxyz"
PLANTED = "planted-secret-7f3a9c1e5b2d4680"  # the value of ECHO_API_TOKEN the backend leaks

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}

# Each client/path combination a test runs over: (transport, client mode).
PATHS = [("http", "auto"), ("http", "legacy"), ("sse", "legacy")]


def clients() -> dict[str, Any]:
    return {
        "alice": {"token_sha256": hash_token(ALICE), "deny": ["local_add"]},
        "bob": {"token_sha256": hash_token(BOB), "allow": ["local_echo", "leaky_leak", "!local_crash"]},
        "limited": {"token_sha256": hash_token(LIMITED), "rate_limit": {"per_minute": 1, "burst": 3}},
    }


def secured_config(
    directory: Path, auth: dict[str, Any] | None = None, *, with_leaky: bool = True, **servers: Any
) -> Path:
    """`local` (echo) and `leaky` (a backend that leaks ECHO_API_TOKEN) behind `auth`; `with_leaky=False`
    for a test that never calls `leaky`, which then only costs its start-up."""
    leaky = stdio_echo_server()
    leaky["args"] = ["-m", "tests.backends.leaky"]
    leaky["env"] = {**leaky["env"], "ECHO_API_TOKEN": "${ECHO_API_TOKEN}"}
    if with_leaky:
        servers = {"leaky": leaky, **servers}
    auth = auth if auth is not None else {"clients": clients()}
    return write_config(directory, {"local": stdio_echo_server(), **servers}, {"auth": auth})


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = secured_config(tmp_path_factory.mktemp("secured"))
    process = GatewayProcess(config, ECHO_API_TOKEN=PLANTED)
    try:
        yield process
    finally:
        process.stop()


def client(gateway: GatewayProcess, token: str | None, transport: str = "http", mode: str = "auto") -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if transport == "sse":
        return Client(SSETransport(gateway.base + "/sse", headers=headers), mode=mode)  # type: ignore[arg-type]
    return Client(StreamableHttpTransport(gateway.base + "/mcp", headers=headers), mode=mode)  # type: ignore[arg-type]


def rpc(
    gateway: GatewayProcess,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    request_id: int = 1,
) -> httpx.Response:
    """One stateless (2026-07-28) JSON-RPC request to /mcp, as raw HTTP."""
    params = {**(params or {}), "_meta": ENVELOPE}
    all_headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    if method == "tools/call":
        all_headers["Mcp-Name"] = params["name"]
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    return local_http.post(gateway.base + "/mcp", content=body, headers=all_headers, timeout=30)


def tool_names(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {tool["name"] for tool in response.json()["result"]["tools"]}


AUDIT_TEXT = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO mcp_gateway\.audit(?: \[.+\])?: "
    r"tools/call (?P<tool>\S+): (?P<outcome>\S+) client=(?P<client>\S+) ms=(?P<ms>[\d.]+)"
    r"(?: arguments=(?P<arguments>.*))?$"
)


def audit_lines(stderr: str) -> list[dict[str, Any]]:
    """The audit lines of a text-format gateway's stderr, as the dicts an audit file holds."""
    lines = []
    for line in stderr.splitlines():
        assert not (line.startswith("{") and '"outcome"' in line), f"a raw JSON audit line in text logs: {line}"
        if match := AUDIT_TEXT.match(line):
            entry: dict[str, Any] = {
                "ts": match["ts"],
                "client": None if match["client"] == "-" else match["client"],
                "tool": match["tool"],
                "outcome": match["outcome"],
                "ms": float(match["ms"]),
            }
            if match["arguments"] is not None:
                entry["arguments"] = json.loads(match["arguments"])
            lines.append(entry)
    return lines
