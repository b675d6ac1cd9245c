"""HTTP edges (issue 16): `GET /sse` that cannot accept an event stream is 406 (as `/mcp` answers), and
surrounding whitespace in `Mcp-Method`/`Mcp-Name` values is accepted (SEP-2243)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(write_config(tmp_path_factory.mktemp("edges"), {"local": stdio_echo_server()}))
    try:
        yield process
    finally:
        process.stop()


def test_sse_get_accepting_only_json_is_406(gateway: GatewayProcess) -> None:
    response = local_http.get(gateway.base + "/sse", headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 406
    assert response.json()["error"] == "not_acceptable"


def raw_post(gateway: GatewayProcess, body: bytes, headers: list[str]) -> tuple[int, bytes]:
    """One HTTP/1.1 POST written by hand (HTTP clients refuse to send header values with spaces around)."""
    lines = [
        "POST /mcp HTTP/1.1",
        f"Host: 127.0.0.1:{gateway.port}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        "MCP-Protocol-Version: 2026-07-28",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *headers,
    ]
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


@pytest.mark.parametrize("pad", [" ", "\t", "  \t "])
def test_whitespace_around_mcp_method_and_name_is_accepted(gateway: GatewayProcess, pad: str) -> None:
    params = {"name": "local_echo", "arguments": {"text": "hi"}, "_meta": META}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
    status, payload = raw_post(gateway, body, [f"Mcp-Method:{pad}tools/call{pad}", f"Mcp-Name:{pad}local_echo{pad}"])
    assert status == 200, payload
    assert json.loads(payload)["result"]["content"][0]["text"] == "hi"
