"""Bad input gets the proper JSON-RPC or tool error, and the gateway keeps serving everyone else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import client_for
from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, child_env, serve_stdio

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def post(
    gateway: GatewayProcess, body: bytes | str, method: str = "tools/call", name: str | None = None
) -> httpx.Response:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    if name:
        headers["Mcp-Name"] = name
    return local_http.post(gateway.base + "/mcp", content=body, headers=headers, timeout=30)


def call(gateway: GatewayProcess, name: str, arguments: Any, request_id: int = 1) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": ENVELOPE},
    }
    return post(gateway, json.dumps(body), name=name)


def test_malformed_json_is_a_parse_error(gateway: GatewayProcess) -> None:
    response = post(gateway, '{"jsonrpc": "2.0", "id": 1, "method": ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700


def test_not_a_request_is_invalid_request(gateway: GatewayProcess) -> None:
    response = post(gateway, "[1, 2, 3]")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600


def test_unknown_method(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/frobnicate", "params": {"_meta": ENVELOPE}}
    response = post(gateway, json.dumps(body), method="tools/frobnicate")
    assert response.json()["error"]["code"] == -32601


def test_unknown_tool_is_a_tool_error(gateway: GatewayProcess) -> None:
    result = call(gateway, "nope_nothing", {}).json()["result"]
    assert result["isError"] is True
    assert "Unknown tool" in result["content"][0]["text"]


def test_arguments_failing_the_schema(gateway: GatewayProcess) -> None:
    result = call(gateway, "local_add", {"a": "two", "b": 2}).json()["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert "local_add" in text and "integer" in text
    missing = call(gateway, "local_add", {"a": 1}).json()["result"]
    assert missing["isError"] is True and "'b' is a required property" in missing["content"][0]["text"]


def test_arguments_of_the_wrong_shape(gateway: GatewayProcess) -> None:
    response = call(gateway, "local_add", [1, 2])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32602


def test_envelope_without_protocol_fields(gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "local_echo", "arguments": {}}}
    response = post(gateway, json.dumps(body), name="local_echo")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32602


def test_headers_that_disagree_with_the_body(gateway: GatewayProcess) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "local_echo", "arguments": {"text": "x"}, "_meta": ENVELOPE},
    }
    response = post(gateway, json.dumps(body), name="remote_echo")
    assert response.status_code == 400
    assert "Mcp-Name" in response.json()["error"]["message"] or "mcp-name" in response.json()["error"]["message"]


def test_oversized_body_is_refused(gateway: GatewayProcess) -> None:
    big = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "local_echo", "arguments": {"text": "x" * (5 * 1024 * 1024)}, "_meta": ENVELOPE},
        }
    )
    response = post(gateway, big, name="local_echo")
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    chunked = local_http.post(
        gateway.base + "/mcp",
        content=iter([big.encode()[i : i + 65536] for i in range(0, len(big), 65536)]),
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    )
    assert chunked.status_code == 413


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nowhere", 404), ("POST", "/health", 405)])
def test_other_endpoints_answer_4xx_with_json(gateway: GatewayProcess, method: str, path: str, status: int) -> None:
    response = local_http.request(method, gateway.base + path)
    assert response.status_code == status
    assert response.json()["error"]


async def test_others_unaffected_after_bad_input(gateway: GatewayProcess, gateway_config: Path) -> None:
    post(gateway, "{{{{")
    call(gateway, "nope", {})
    async with client_for("http", gateway, gateway_config) as client:
        result = await client.call_tool("remote_echo", {"text": "fine"})
    assert result.content[0].text == "fine"
    assert gateway.health()["status"] == "ok"


def test_stdio_bad_lines_get_errors_and_the_session_goes_on(gateway_config: Path) -> None:
    envelope = json.dumps(ENVELOPE)
    lines = [
        "this is not json",
        '{"jsonrpc": "2.0", "id": 5, "method": 12}',
        '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"nope","arguments":{},"_meta":'
        + envelope
        + "}}",
        '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"local_echo","arguments":{"text":"ok"},"_meta":'
        + envelope
        + "}}",
    ]
    answers = serve_stdio(gateway_config, lines, timeout=60)
    by_id = {answer.get("id"): answer for answer in answers}
    assert by_id[None]["error"]["code"] == -32700
    assert by_id[5]["error"]["code"] == -32600
    assert by_id[6]["result"]["isError"] is True
    assert by_id[7]["result"]["content"][0]["text"] == "ok"


def test_stdio_works_with_files_as_stdin_and_stdout(gateway_config: Path, tmp_path: Path) -> None:
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "local_echo", "arguments": {"text": "from a file"}, "_meta": ENVELOPE},
    }
    (tmp_path / "in.jsonl").write_text(json.dumps(request) + "\n")
    with (tmp_path / "in.jsonl").open("rb") as stdin, (tmp_path / "out.jsonl").open("wb") as stdout:
        subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--config", str(gateway_config)],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=child_env(),
            timeout=60,
            check=True,
        )
    answer = json.loads((tmp_path / "out.jsonl").read_text())
    assert answer["result"]["content"][0]["text"] == "from a file"
