"""No input crashes or hangs the gateway (issue 16, point 3): each malformed message gets a JSON-RPC error
(HTTP 400, or an error line over stdio) and the next message is served; invalid Unicode in tool arguments
is a tool error at once; arbitrary JSON in every field of every method keeps both transports alive and every
answer well-formed (hypothesis)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config
from tests.helpers.stdio import StdioGateway, check_jsonrpc

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
DEEP = "[" * 1100 + "]" * 1100

# (line, the error code it must get)
MALFORMED = [
    ('{"jsonrpc":"2.0","id":"m","method":{}}', -32600),
    ('{"jsonrpc":"2.0","id":[1],"method":"tools/call","params":{"name":"local_echo","arguments":{}}}', -32600),
    ('{"jsonrpc":"2.0","id":{},"method":"tools/list"}', -32600),
    ('{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[1]}}', -32602),
    (
        '{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":{}}}}',
        -32602,
    ),
    (
        '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"local_echo","arguments":{"text":'
        + DEEP
        + "}}}",
        -32600,
    ),
    (DEEP, -32600),
]
SURROGATE = (
    '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"local_echo","arguments":{"text":"\\ud800"}}}'
)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("malformed"), {"local": stdio_echo_server()})


@pytest.fixture(scope="module")
def stdio(config: Path) -> Iterator[StdioGateway]:
    gateway = StdioGateway(config)
    gateway.initialize()
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.fixture(scope="module")
def http(config: Path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(config)
    try:
        yield gateway
    finally:
        gateway.stop()


def post(gateway: GatewayProcess, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
    all_headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        **(headers or {}),
    }
    return local_http.post(
        gateway.base + "/mcp", content=body.encode("utf-8", "surrogatepass"), headers=all_headers, timeout=60
    )


@pytest.mark.parametrize(("line", "code"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_line_over_stdio_is_an_error_line(stdio: StdioGateway, line: str, code: int) -> None:
    stdio.send(line)
    answer = stdio.read()
    assert answer["error"]["code"] == code, answer
    stdio.ping()


@pytest.mark.parametrize(("line", "code"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_body_over_http_is_400(http: GatewayProcess, line: str, code: int) -> None:
    response = post(http, line)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert http.health()["backends"]["local"]["state"] == "up"


def test_lone_surrogate_in_arguments_is_a_tool_error(stdio: StdioGateway, http: GatewayProcess) -> None:
    stdio.send(SURROGATE)
    result = stdio.answer(9)["result"]
    assert result["isError"] is True and "not valid Unicode" in result["content"][0]["text"]
    modern = SURROGATE.replace('"arguments"', f'"_meta":{json.dumps(ENVELOPE)},"arguments"')
    response = post(http, modern, {"Mcp-Method": "tools/call", "Mcp-Name": "local_echo"})
    result = response.json()["result"]
    assert result["isError"] is True and "not valid Unicode" in result["content"][0]["text"]


# ------------------------------------------------------------------------------------------- property-based

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
METHODS = st.sampled_from(
    [
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "server/discover",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/roots/list_changed",
    ]
)
NAMES = st.sampled_from(["local_echo", "local_add", "local_whoami", "nope"])
FIELD = {
    "name": NAMES | JSON,
    "arguments": JSON | st.dictionaries(st.sampled_from(["text", "a", "b"]), JSON),
    "_meta": st.just(ENVELOPE)
    | JSON
    | st.fixed_dictionaries(
        {}, optional={"io.modelcontextprotocol/protocolVersion": st.just(MODERN) | JSON, "progressToken": JSON}
    ),
    "cursor": JSON,
    "uri": JSON,
    "requestId": JSON,
    "level": JSON,
    "protocolVersion": JSON,
    "capabilities": JSON,
    "clientInfo": JSON,
    "ref": JSON,
    "argument": JSON,
}
PARAMS = st.fixed_dictionaries({}, optional=FIELD) | JSON
MESSAGE = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | JSON, "method": METHODS | JSON},
    optional={"id": st.integers(0, 100) | st.text(max_size=6) | JSON, "params": PARAMS},
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(message=MESSAGE)
def test_stdio_survives_any_json_in_any_field(stdio: StdioGateway, message: dict[str, Any]) -> None:
    stdio.send(json.dumps(message))
    stdio.ping()  # every line before the ping's answer is checked well-formed on the way


@FUZZ
@given(message=MESSAGE | st.lists(MESSAGE, min_size=1, max_size=2))
def test_http_survives_any_json_in_any_field(http: GatewayProcess, message: Any) -> None:
    first = message[0] if isinstance(message, list) else message
    method = first.get("method")
    headers = {"Mcp-Method": method} if isinstance(method, str) and method.isascii() and method.isprintable() else {}
    response = post(http, json.dumps(message), headers)
    assert response.status_code < 500, (response.status_code, response.text)
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json") and response.content:
        document = response.json()
        for item in document if isinstance(document, list) else [document]:
            if isinstance(item, dict) and "jsonrpc" not in item:
                assert "error" in item, item  # a gateway rejection
            else:
                check_jsonrpc(item)
    elif content_type.startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                check_jsonrpc(json.loads(line[5:]))


def test_both_still_serve_after_the_fuzz(stdio: StdioGateway, http: GatewayProcess) -> None:
    stdio.ping()
    assert stdio.proc.poll() is None and http.proc.poll() is None
    assert http.health()["status"] == "ok"
