"""Input rounds (SEP-2322, multi round-trip requests) through the gateway, end to end: the conformance fixture
backend in the 2026-07-28 era (its sampling and elicitation are `input_required` results) behind a real gateway
process.

A 2026-07-28 client gets the backend's `input_required` as the backend sent it (its `requestState` untouched:
the backend's own seal still verifies on the retry, and a tampered one does not), and its retry with
`inputResponses` reaches the same backend tool, through a tool rename and a profile, past the guard (allow lists,
rate limits) and never through the cache. A handshake-era client is asked by the gateway instead
(`elicitation/create` on its own session), which is what `test_relay.py` checks for every front transport.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from hypothesis import given
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError

from gateway.auth.keys import hash_token
from gateway.backends.inflight import Peer
from gateway.backends.rounds import (
    CAPABILITIES_META,
    CAPABILITY,
    INPUT_REQUIRED,
    MAX_ROUNDS,
    MAX_STATE_BYTES,
    InputRound,
    InvalidRound,
    cleaned,
    drive,
    invalid,
)
from tests.gateway.security.conftest import ALICE, BOB, ENVELOPE, LIMITED, MODERN
from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, child_env, write_config

FIXTURE = {
    "command": "python",
    "args": ["-m", "tests.backends.conformance"],
    "namespace": "",
    "env": {"PYTHONPATH": str(ROOT)},
    "tools": {"test_elicitation": {"name": "ask_who"}},  # the backend's tool, exposed under another name
}
CLIENTS = {
    "alice": {"token_sha256": hash_token(ALICE)},
    "bob": {"token_sha256": hash_token(BOB), "allow": ["test_simple_text"]},
    "limited": {"token_sha256": hash_token(LIMITED), "rate_limit": {"per_minute": 1, "burst": 1}},
}
PROFILES = {"asking": {"tools": ["ask_who", "test_greeting"]}}
ADA = {"action": "accept", "content": {"username": "ada", "email": "ada@example.com"}}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gateway = {"auth": {"clients": CLIENTS}, "profiles": PROFILES}
    return write_config(tmp_path_factory.mktemp("input-rounds"), {"conformance": FIXTURE}, gateway)


@pytest.fixture(scope="module")
def gateway(config: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(config)
    try:
        process.wait_for(lambda health: health["backends"]["conformance"]["state"] == "up")
        yield process
    finally:
        process.stop()


async def _unused(*args: Any) -> Any:
    raise AssertionError("the test answers the input requests itself")


def modern_client(gateway: GatewayProcess, token: str, path: str = "/mcp", **kwargs: Any) -> Client:
    """A real 2026-07-28 client (the SDK's `server/discover` era) over Streamable HTTP, declaring sampling and
    elicitation (a backend may ask a client only what it declared)."""
    transport = StreamableHttpTransport(gateway.base + path, headers={"Authorization": f"Bearer {token}"})
    handlers = {"sampling_handler": _unused, "elicitation_handler": _unused, **kwargs}
    return Client(transport, mode=MODERN, **handlers)  # type: ignore[arg-type]


DECLARED = {"elicitation": {}, "sampling": {}}


def call(
    gateway: GatewayProcess,
    token: str,
    name: str,
    arguments: dict[str, Any],
    capabilities: dict[str, Any] = DECLARED,
    **fields: Any,
) -> dict[str, Any]:
    """One stateless 2026-07-28 `tools/call` as raw HTTP (to send what an SDK client would not): its JSON-RPC
    response."""
    meta = {**ENVELOPE, "io.modelcontextprotocol/clientCapabilities": capabilities}
    params = {"name": name, "arguments": arguments, **fields, "_meta": meta}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": name,
        "Authorization": f"Bearer {token}",
    }
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
    response = local_http.post(gateway.base + "/mcp", content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def text(result: Any) -> str:
    return str(result.content[0].text)


async def test_a_modern_client_gets_input_required_and_its_retry_completes(gateway: GatewayProcess) -> None:
    async with modern_client(gateway, ALICE) as client:
        first = await client.session.call_tool("ask_who", {"message": "who are you?"}, allow_input_required=True)
        assert isinstance(first, mcp_types.InputRequiredResult)
        assert first.input_requests is not None and list(first.input_requests) == ["ask"]
        asked = first.input_requests["ask"]
        assert isinstance(asked, mcp_types.ElicitRequest)
        assert asked.params.message == "who are you?"  # type: ignore[union-attr]
        assert first.request_state  # the backend's sealed state: the gateway relays it, unread

        answers = {"ask": mcp_types.ElicitResult.model_validate(ADA)}
        done = await client.session.call_tool(
            "ask_who", {"message": "who are you?"}, input_responses=answers, request_state=first.request_state
        )
        assert "action=accept" in text(done) and "ada@example.com" in text(done)

        # The backend seals its state (the SDK's RequestStateBoundary): one changed character and it refuses, so
        # the retry above carried it byte for byte, and the gateway is not what checks it.
        tampered = first.request_state[:-1] + ("A" if first.request_state[-1] != "A" else "B")
        refused = await client.session.call_tool(
            "ask_who", {"message": "who are you?"}, input_responses=answers, request_state=tampered
        )
        assert refused.is_error and "requestState" in text(refused)


async def test_the_sdk_client_drives_the_rounds_itself(gateway: GatewayProcess) -> None:
    asked: list[str] = []

    async def sampling(messages: list[Any], params: Any, context: Any) -> str:
        asked.append(messages[0].content.text)
        return "forty-two"

    async def elicitation(message: str, response_type: Any, params: Any, context: Any) -> Any:
        asked.append(message)
        return mcp_types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    async with modern_client(gateway, ALICE, sampling_handler=sampling, elicitation_handler=elicitation) as client:
        sampled = await client.call_tool("test_sampling", {"prompt": "the answer?"})
        assert text(sampled) == "LLM response: forty-two"
        elicited = await client.call_tool("ask_who", {"message": "who?"})
        assert "ada@example.com" in text(elicited)
    assert asked == ["the answer?", "who?"]


async def test_a_call_with_header_arguments_relays_its_rounds_too(gateway: GatewayProcess) -> None:
    """A tool with `x-mcp-header` arguments is called with `Mcp-Param-*` headers, which the FastMCP front
    answers rather than the fast path: the requestState crosses either unchanged, so a round begun on one
    completes on the other (were either to seal it again, the other could not open it)."""
    tool, arguments = "test_greeting_by_region", {"region": "north"}
    answer = {"action": "accept", "content": {"name": "Ada"}}
    async with modern_client(gateway, ALICE) as client:
        await client.list_tools()  # the SDK sends header arguments only for tools it has listed
        first = await client.session.call_tool(tool, arguments, allow_input_required=True)  # the FastMCP front
        assert isinstance(first, mcp_types.InputRequiredResult) and first.request_state
        done = call(gateway, ALICE, tool, arguments, inputResponses={"ask": answer}, requestState=first.request_state)
        assert done["result"]["content"][0]["text"] == "Hello, Ada of north!"  # answered by the fast path

        fast = call(gateway, ALICE, tool, arguments)["result"]
        assert fast["resultType"] == "input_required"
        responses = {"ask": mcp_types.ElicitResult.model_validate(answer)}
        done_too = await client.session.call_tool(
            tool, arguments, input_responses=responses, request_state=fast["requestState"]
        )
        assert text(done_too) == "Hello, Ada of north!"


async def test_the_retry_reaches_the_renamed_tool_through_a_profile(gateway: GatewayProcess) -> None:
    async with modern_client(gateway, ALICE, path="/mcp/asking") as client:
        assert {tool.name for tool in await client.list_tools()} == {"ask_who", "test_greeting"}
        first = await client.session.call_tool("ask_who", {"message": "profile?"}, allow_input_required=True)
        assert isinstance(first, mcp_types.InputRequiredResult)
        answers = {"ask": mcp_types.ElicitResult.model_validate(ADA)}
        done = await client.session.call_tool(
            "ask_who", {"message": "profile?"}, input_responses=answers, request_state=first.request_state
        )
        assert "ada@example.com" in text(done)
        # outside the profile the same retry is a call for an unknown tool
        outside = await client.session.call_tool(
            "test_sampling", {"prompt": "x"}, input_responses=answers, request_state=first.request_state
        )
        assert outside.is_error and "Unknown tool" in text(outside)


def test_a_retry_passes_the_allow_list_and_the_rate_limit(gateway: GatewayProcess) -> None:
    first = call(gateway, ALICE, "ask_who", {"message": "hi"})["result"]
    assert first["resultType"] == "input_required"
    retry = {"inputResponses": {"ask": ADA}, "requestState": first["requestState"]}

    denied = call(gateway, BOB, "ask_who", {"message": "hi"}, **retry)["result"]  # bob may not call it
    assert denied["isError"] and denied["content"][0]["text"] == "Unknown tool: 'ask_who'"

    asked = call(gateway, LIMITED, "ask_who", {"message": "hi"})["result"]  # its one token
    assert asked["resultType"] == "input_required"
    limited = call(gateway, LIMITED, "ask_who", {"message": "hi"}, **retry)["result"]
    assert limited["isError"] and "Rate limit exceeded" in limited["content"][0]["text"]


async def test_a_retry_is_never_answered_from_or_stored_in_the_cache(gateway: GatewayProcess) -> None:
    """`test_greeting` is read-only, so the gateway caches its results; a result that came of the caller's
    answers is not one of them, for a modern client (its retries) or a handshake-era one (the gateway's)."""

    def retry(name: str) -> dict[str, Any]:
        first = call(gateway, ALICE, "test_greeting", {})["result"]
        assert first["resultType"] == "input_required"  # nothing stored under the first call
        answer = {"action": "accept", "content": {"name": name}}
        return call(gateway, ALICE, "test_greeting", {}, inputResponses={"ask": answer}, **_state(first))

    assert retry("Ada")["result"]["content"][0]["text"] == "Hello, Ada!"
    assert retry("Grace")["result"]["content"][0]["text"] == "Hello, Grace!"  # not Ada's, from the cache

    async def elicitation(message: str, response_type: Any, params: Any, context: Any) -> Any:
        return mcp_types.ElicitResult(action="accept", content={"name": "Carol"})

    legacy = Client(
        StreamableHttpTransport(gateway.base + "/mcp", headers={"Authorization": f"Bearer {ALICE}"}),
        mode="legacy",
        elicitation_handler=elicitation,
    )
    async with legacy:
        assert text(await legacy.call_tool("test_greeting", {})) == "Hello, Carol!"  # the gateway asked it
    assert retry("Dan")["result"]["content"][0]["text"] == "Hello, Dan!"  # and did not keep Carol's greeting


def test_a_backend_may_ask_a_client_only_what_it_declared(gateway: GatewayProcess) -> None:
    refused = call(gateway, ALICE, "test_sampling", {"prompt": "x"}, capabilities={"elicitation": {}})["result"]
    assert refused["isError"] and "'sampling/createMessage'" in refused["content"][0]["text"]


def _state(result: dict[str, Any]) -> dict[str, Any]:
    return {"requestState": result["requestState"]} if "requestState" in result else {}


def test_request_state_is_size_limited_both_ways(gateway: GatewayProcess) -> None:
    small = call(gateway, ALICE, "test_request_state", {"size": 100})["result"]
    assert small["resultType"] == "input_required" and "inputRequests" not in small
    done = call(gateway, ALICE, "test_request_state", {"size": 100}, requestState=small["requestState"])["result"]
    assert done["content"][0]["text"] == "state of 100 characters came back"

    big = call(gateway, ALICE, "test_request_state", {"size": MAX_STATE_BYTES})["result"]  # sealed: longer
    assert big["isError"] and "over the gateway's limit" in big["content"][0]["text"]

    too_long = call(gateway, ALICE, "test_request_state", {"size": 1}, requestState="x" * (MAX_STATE_BYTES + 1))
    assert too_long["error"]["code"] == -32602 and "requestState" in too_long["error"]["message"]
    not_text = call(gateway, ALICE, "test_request_state", {"size": 1}, requestState={"forged": True})
    assert not_text["error"]["code"] == -32602


async def test_a_modern_client_over_stdio(config: Path) -> None:
    """The stdio front's 2026 requests take the same path (no auth there: the config's profile is not used)."""
    transport = StdioTransport(
        sys.executable, ["-m", "gateway", "serve", "--config", str(config)], env=child_env(), cwd=str(ROOT)
    )

    async def elicitation(message: str, response_type: Any, params: Any, context: Any) -> Any:
        return mcp_types.ElicitResult(action="accept", content={"name": "Eve"})

    async with Client(transport, mode=MODERN, elicitation_handler=elicitation) as client:
        first = await client.session.call_tool("test_greeting", {}, allow_input_required=True)
        assert isinstance(first, mcp_types.InputRequiredResult)
        assert text(await client.call_tool("test_greeting", {})) == "Hello, Eve!"


# ---------------------------------------------------------------------------------------------- the shapes

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
STATE = st.text(max_size=40) | st.just("s" * MAX_STATE_BYTES) | st.just("é" * (MAX_STATE_BYTES // 2 + 1))
REQUEST = st.fixed_dictionaries(
    {"method": st.sampled_from([*CAPABILITY, "tools/call"]) | JSON}, optional={"params": JSON}
)


@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "inputResponses": JSON | st.dictionaries(st.text(max_size=5), st.dictionaries(st.text(max_size=5), JSON)),
            "requestState": STATE | JSON,
            "_meta": JSON | st.fixed_dictionaries({CAPABILITIES_META: JSON}),
        },
    )
)
def test_a_clients_round_is_relayed_as_sent_or_refused(params: dict[str, Any]) -> None:
    try:
        parsed = InputRound.parse(params)
    except InvalidRound as error:
        assert str(error).startswith("Invalid params: ")
        return
    wire = parsed.wire()
    for field in ("inputResponses", "requestState"):
        assert wire.get(field) is (params[field] if params.get(field) is not None else None)  # the very object
    state = params.get("requestState")
    assert state is None or len(state.encode()) <= MAX_STATE_BYTES
    assert parsed.retry == bool(wire)


@given(
    result=st.fixed_dictionaries(
        {"resultType": st.just(INPUT_REQUIRED)},
        optional={
            "inputRequests": JSON | st.dictionaries(st.text(max_size=5), REQUEST | JSON, max_size=3),
            "requestState": STATE | JSON,
            "_meta": JSON | st.dictionaries(st.sampled_from(["io.modelcontextprotocol/x", "fastmcp", "mine"]), JSON),
        },
    )
)
def test_a_backends_input_required_is_relayed_untouched_or_refused(result: dict[str, Any]) -> None:
    problem = invalid(result)
    if problem is not None:
        assert isinstance(problem, str)
        return
    requests, state = result.get("inputRequests"), result.get("requestState")
    assert requests is not None or state is not None
    assert all(request["method"] in CAPABILITY for request in (requests or {}).values())
    relayed = cleaned(result)
    assert relayed.get("inputRequests") is requests and relayed.get("requestState") is state
    meta = relayed.get("_meta")
    assert meta is None or not any(key.startswith("io.modelcontextprotocol/") or key == "fastmcp" for key in meta)


async def test_the_gateway_gives_up_on_a_backend_that_keeps_asking() -> None:
    class Answering(Peer):
        asked = 0

        def capable(self, method: str) -> bool:
            return True

        async def request(self, method: str, params: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
            self.asked += 1
            return {"action": "accept", "content": {}}

    asking = {"resultType": INPUT_REQUIRED, "inputRequests": {"ask": {"method": "elicitation/create", "params": {}}}}
    sent: list[InputRound] = []

    async def send(echo: InputRound) -> tuple[dict[str, Any], str]:
        sent.append(echo)
        return asking, INPUT_REQUIRED

    peer = Answering()
    with pytest.raises(MCPError, match="kept asking"):
        await drive(asking, send, peer, 1.0, "stubborn")
    assert peer.asked == len(sent) == MAX_ROUNDS
    assert sent[0].wire() == {"inputResponses": {"ask": {"action": "accept", "content": {}}}}
