"""Limits per client (issue 16, point 4): sessions per client are capped
(`gateway.auth.max_sessions_per_client`; over it `initialize` is 429 with a JSON-RPC error naming the limit),
`initialize` counts against the client's rate limit, and connections that never finish their headers are
closed."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.security.conftest import ALICE, BOB, LIMITED, clients, rpc, secured_config
from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess

INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
)


def initialize(gateway: GatewayProcess, token: str) -> httpx.Response:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
    }
    return local_http.post(gateway.base + "/mcp", content=INITIALIZE, headers=headers, timeout=30)


def close(gateway: GatewayProcess, token: str, session: str) -> None:
    headers = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    assert local_http.delete(gateway.base + "/mcp", headers=headers, timeout=10).status_code < 300


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for both tests: at most 2 sessions per client, and headers due within 1 s instead of the
    default 10 s (`gateway.header_timeout`; the second test waits it out). The header test opens no session
    and calls nothing, so neither sees the other's state."""
    auth = {"clients": clients(), "max_sessions_per_client": 2}
    gateway = GatewayProcess(
        secured_config(tmp_path_factory.mktemp("limits"), auth, with_leaky=False),
        ECHO_API_TOKEN="x" * 16,
        MCP_GATEWAY_HEADER_TIMEOUT="1",
    )
    try:
        yield gateway
    finally:
        gateway.stop()


def test_sessions_per_client_are_capped_and_initialize_is_rate_limited(capped: GatewayProcess) -> None:
    gateway = capped
    opened = [initialize(gateway, ALICE) for _ in range(2)]
    assert all(r.status_code == 200 and r.headers.get("mcp-session-id") for r in opened)
    over = initialize(gateway, ALICE)
    assert over.status_code == 429
    error = over.json()["error"]
    assert "gateway.auth.max_sessions_per_client" in error["message"] and error["data"]["max"] == 2
    assert initialize(gateway, BOB).status_code == 200  # another client is not locked out
    # closing a session frees its place
    session = opened[0].headers["mcp-session-id"]
    close(gateway, ALICE, session)
    assert initialize(gateway, ALICE).status_code == 200

    # `limited` has a burst of 3: two initializes and a tool call take them all, so a fourth request,
    # an initialize with both sessions closed again, is over its rate limit
    sessions = [initialize(gateway, LIMITED).headers["mcp-session-id"] for _ in range(2)]
    assert (
        not rpc(gateway, "tools/call", {"name": "local_echo", "arguments": {"text": "x"}}, token=LIMITED)
        .json()["result"]
        .get("isError")
    )
    for session in sessions:
        close(gateway, LIMITED, session)
    limited = initialize(gateway, LIMITED)
    assert (
        limited.status_code == 429 and "Rate limit exceeded for client 'limited'" in limited.json()["error"]["message"]
    )
    assert int(limited.headers["retry-after"]) >= 1


def test_connections_that_never_finish_their_headers_are_closed(capped: GatewayProcess) -> None:
    gateway = capped
    held = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=60)
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the rest
        held.append(sock)
    try:
        for sock in held:
            assert sock.recv(1024) == b""  # closed by the gateway (the 60 s socket timeout would raise)
    finally:
        for sock in held:
            sock.close()
    assert local_http.get(gateway.base + "/health", timeout=10).status_code == 200
