"""A session belongs to the client that opened it: another client's token cannot use its id (Streamable
HTTP: the gateway's own check; legacy SSE: the SDK's, kept here so that it stays true)."""

from __future__ import annotations

import json

import httpx

from tests.gateway.security.conftest import ALICE, BOB
from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess

LEGACY = "2025-06-18"


def _post(gateway: GatewayProcess, token: str, message: dict, session: str | None = None) -> httpx.Response:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
    }
    if session is not None:
        headers["Mcp-Session-Id"] = session
        headers["MCP-Protocol-Version"] = LEGACY
    return local_http.post(gateway.base + "/mcp", content=json.dumps(message), headers=headers, timeout=30)


def _open_session(gateway: GatewayProcess, token: str) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    response = _post(gateway, token, init)
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    assert _post(gateway, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session).status_code == 202
    return session


def test_streamable_session_is_bound_to_its_client(secured: GatewayProcess) -> None:
    session = _open_session(secured, ALICE)
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    own = _post(secured, ALICE, listing, session)
    assert own.status_code == 200, own.text
    stolen = _post(secured, BOB, listing, session)
    unknown = _post(secured, BOB, listing, "0" * 32)
    assert stolen.status_code == unknown.status_code == 404, (stolen.status_code, stolen.text)
    # nor can Bob listen on Alice's stream or end her session
    headers = {
        "Accept": "text/event-stream",
        "Authorization": f"Bearer {BOB}",
        "Mcp-Session-Id": session,
        "MCP-Protocol-Version": LEGACY,
    }
    assert local_http.get(secured.base + "/mcp", headers=headers, timeout=30).status_code == 404
    assert local_http.delete(secured.base + "/mcp", headers=headers, timeout=30).status_code == 404
    assert _post(secured, ALICE, listing, session).status_code == 200  # still Alice's


def test_legacy_sse_session_is_bound_to_its_client(secured: GatewayProcess) -> None:
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {ALICE}"}
    with httpx.stream("GET", secured.base + "/sse", headers=headers, timeout=30) as stream:
        endpoint = None
        lines = stream.iter_lines()  # kept open: closing the iterator would close the stream
        for line in lines:
            if line.startswith("data:") and "session_id=" in line:
                endpoint = line[5:].strip()
                break
        assert endpoint is not None
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        }

        def post(token: str, url: str) -> httpx.Response:
            return local_http.post(
                secured.base + url,
                content=json.dumps(init),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
                timeout=30,
            )

        stolen = post(BOB, endpoint)
        unknown = post(BOB, endpoint.split("session_id=")[0] + "session_id=" + "0" * 32)
        assert stolen.status_code == unknown.status_code == 404, (stolen.status_code, stolen.text)
        assert stolen.text == unknown.text
        assert post(ALICE, endpoint).status_code == 202


async def test_owners_are_learned_from_responses_and_bounded() -> None:
    from gateway.auth.sessions import SessionOwners

    owners = SessionOwners(max_sessions=2)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    for session in ("s1", "s2", "s3"):
        watch = owners.learning({"headers": []}, "alice", send)
        await watch({"type": "http.response.start", "status": 200, "headers": [(b"mcp-session-id", session.encode())]})

    def presented(session: str, client: str) -> bytes:
        scope = {"headers": [(b"mcp-session-id", session.encode()), (b"accept", b"*/*")]}
        return dict(owners.guard(scope, client)["headers"])[b"mcp-session-id"]

    assert presented("s3", "alice") == b"s3" and presented("s2", "alice") == b"s2"
    assert presented("s3", "bob") != b"s3"
    assert presented("s1", "alice") != b"s1"  # forgotten (the oldest of three): refused like unknown
    # a request that names a session cannot claim another one through its response
    watch = owners.learning({"headers": [(b"mcp-session-id", b"x")]}, "bob", send)
    assert watch is send
