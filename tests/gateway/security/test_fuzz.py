"""Property-based fuzzing of the JSON-RPC endpoint: whatever arrives, the answer is a well-formed error or
result (or one of the gateway's JSON rejections), never a 5xx, and the gateway stays up."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.security.conftest import ALICE, BOB, ENVELOPE, MODERN
from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
METHODS = st.sampled_from(
    [
        "tools/call",
        "tools/list",
        "initialize",
        "ping",
        "resources/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "notifications/initialized",
        "completion/complete",
        "logging/setLevel",
    ]
) | st.text(max_size=16)
TOOLS = st.sampled_from(["local_echo", "local_add", "leaky_leak", "local_nope", "local_crash", ""]) | st.text(
    max_size=10
)
PARAMS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"name": TOOLS, "arguments": JSON | st.dictionaries(st.sampled_from(["text", "a", "b"]), JSON, max_size=3)},
        optional={"_meta": st.just(ENVELOPE) | JSON, "cursor": JSON},
    ),
)
MESSAGE = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]) | JSON, "method": METHODS},
    optional={"id": st.integers() | st.text(max_size=8) | st.none() | JSON, "params": PARAMS},
)
BODY = st.one_of(
    MESSAGE.map(json.dumps),
    st.lists(MESSAGE, max_size=3).map(json.dumps),
    JSON.map(json.dumps),
    st.binary(max_size=64).map(lambda raw: raw.decode("latin-1")),
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Accept": st.sampled_from(["application/json, text/event-stream", "application/json", "*/*", ""]),
        "Content-Type": st.sampled_from(["application/json", "text/plain", ""]),
        "MCP-Protocol-Version": st.sampled_from([MODERN, "2025-06-18", "1999-01-01", ""]),
        "Mcp-Session-Id": st.text(alphabet="0123456789abcdef", max_size=32),
        # h11 (the client) refuses header values with surrounding whitespace before they are sent
        "Mcp-Method": METHODS.filter(lambda m: m.isascii() and m.isprintable() and m == m.strip()),
        "Authorization": st.sampled_from([f"Bearer {BOB}", f"Bearer {BOB}", f"Bearer {ALICE}x", "Bearer", ""]),
    },
)


def check_jsonrpc(item: Any) -> None:
    assert isinstance(item, dict), item
    if "method" in item:  # a notification on an SSE stream
        return
    assert item.get("jsonrpc") == "2.0", item
    assert ("result" in item) != ("error" in item), item
    if "error" in item:
        assert isinstance(item["error"]["code"], int) and isinstance(item["error"]["message"], str), item


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODY, headers=HEADERS)
def test_jsonrpc_endpoint_survives_anything(secured: GatewayProcess, body: str, headers: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {BOB}", **headers}
    response = local_http.post(
        secured.base + "/mcp", content=body.encode("utf-8", "surrogatepass"), headers=headers, timeout=30
    )
    assert response.status_code < 500, (response.status_code, response.text)
    if not response.content:
        assert response.status_code in (200, 202, 204, 400, 404, 405, 406, 415), response.status_code
        return
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                check_jsonrpc(json.loads(line[5:]))
        return
    if not content_type.startswith("application/json"):
        # the SDK's transport-level refusals (bad Content-Type/Accept/version) are plain-text 4xx
        assert response.status_code in (400, 404, 405, 406, 415), (response.status_code, response.text)
        return
    document = json.loads(response.text)
    if isinstance(document, dict) and "jsonrpc" not in document:
        assert set(document) >= {"error", "message"} or "error" in document, document  # a gateway rejection
    elif isinstance(document, list):
        for item in document:
            check_jsonrpc(item)
    else:
        check_jsonrpc(document)


def test_still_serving_after_the_fuzz(secured: GatewayProcess) -> None:
    assert secured.proc.poll() is None
    assert local_http.get(secured.base + "/health", timeout=10).json()["status"] == "ok"
