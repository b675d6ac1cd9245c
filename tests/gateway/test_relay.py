"""Backend-to-client traffic of a call: sampling, elicitation and logs reach the client that made the call;
resource templates, subscriptions and completion reach the backend; the Host/Origin guard.

The conformance fixture backend runs behind the gateway in both protocol eras: 2026-07-28 (its requests for
input come back as `input_required` rounds the gateway answers by asking the client) and the handshake era
(they are server-to-client requests the gateway relays by the call in flight).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from fastmcp import Client

from gateway.backends.inflight import InFlight, Peer
from tests.gateway.conftest import client_for
from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, write_config

ERAS = ["2026", "handshake"]


def _fixture(era: str) -> dict[str, Any]:
    args = ["-m", "tests.backends.conformance", *(["--legacy"] if era == "handshake" else [])]
    return {"command": "python", "args": args, "namespace": "", "env": {"PYTHONPATH": str(ROOT)}}


@pytest.fixture(scope="module", params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def relay_config(tmp_path_factory: pytest.TempPathFactory, era: str) -> Path:
    return write_config(tmp_path_factory.mktemp(f"relay-{era}"), {"conformance": _fixture(era)})


@pytest.fixture(scope="module")
def relay_gateway(relay_config: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(relay_config)
    try:
        process.wait_for(lambda health: health["backends"]["conformance"]["state"] == "up")
        yield process
    finally:
        process.stop()


class Recorder:
    def __init__(self) -> None:
        self.sampled: list[Any] = []
        self.elicited: list[Any] = []
        self.logs: list[Any] = []

    async def sampling(self, messages: list[Any], params: Any, context: Any) -> str:
        self.sampled.append(messages[0].content.text)
        return "forty-two"

    async def elicitation(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.elicited.append((message, params.requested_schema))
        return mcp_types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    async def log(self, message: Any) -> None:
        self.logs.append(message.data)

    def client(self, transport: str, gateway: GatewayProcess, config: Path) -> Client:
        return client_for(
            transport,
            gateway,
            config,
            mode="legacy",
            sampling_handler=self.sampling,
            elicitation_handler=self.elicitation,
            log_handler=self.log,
        )


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
@pytest.mark.parametrize("transport", ["http", "stdio", "sse"])
async def test_sampling_elicitation_and_logs_reach_the_calling_client(
    transport: str, relay_gateway: GatewayProcess, relay_config: Path
) -> None:
    recorder = Recorder()
    async with recorder.client(transport, relay_gateway, relay_config) as client:
        await client.set_logging_level("debug")
        sampled = await client.call_tool("test_sampling", {"prompt": "the answer?"})
        assert sampled.content[0].text == "LLM response: forty-two"
        assert recorder.sampled == ["the answer?"]

        elicited = await client.call_tool("test_elicitation", {"message": "who are you?"})
        assert "action=accept" in elicited.content[0].text and "ada@example.com" in elicited.content[0].text
        message, schema = recorder.elicited[0]
        assert message == "who are you?" and schema["required"] == ["username", "email"]

        enums = await client.call_tool("test_elicitation_sep1330_enums", {}, raise_on_error=False)
        schema = recorder.elicited[1][1]["properties"]
        assert schema["legacyEnum"]["enumNames"] == ["Option One", "Option Two", "Option Three"]
        assert schema["titledMulti"]["items"]["anyOf"][0] == {"const": "value1", "title": "First Choice"}
        assert "action=accept" in enums.content[0].text

        progress: list[tuple[float, float | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total))

        await client.call_tool("test_tool_with_progress", {}, progress_handler=on_progress)
        assert progress == [(0, 100), (50, 100), (100, 100)]

        await client.call_tool("test_tool_with_logging", {})
        # Every log message arrives before the call's answer, in order.
        texts = [entry["msg"] if isinstance(entry, dict) else entry for entry in recorder.logs]
        assert texts == ["Tool execution started", "Tool processing data", "Tool execution completed"]


async def test_a_client_without_sampling_gets_an_error(relay_gateway: GatewayProcess, relay_config: Path) -> None:
    async with client_for("http", relay_gateway, relay_config, mode="legacy") as client:
        result = await client.call_tool("test_sampling", {"prompt": "x"}, raise_on_error=False)
        assert result.is_error
        assert "sampling" in result.content[0].text.lower()


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_templates_completion_and_subscriptions(
    era: str, relay_gateway: GatewayProcess, relay_config: Path
) -> None:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    async with client_for("http", relay_gateway, relay_config, mode="legacy", message_handler=on_message) as client:
        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates] == ["test://template/{id}/data"]
        contents = await client.read_resource("test://template/7/data")
        assert '"id":"7"' in contents[0].text  # type: ignore[union-attr]

        prompt = mcp_types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments")
        completion = await client.complete(prompt, {"name": "arg1", "value": "par"})
        assert completion.values == ["paris", "park", "party"]
        completion = await client.complete(
            mcp_types.ResourceTemplateReference(type="ref/resource", uri="test://template/{id}/data"),
            {"name": "id", "value": "4"},
        )
        assert completion.values == ["456"]

        session = client.session
        await session.subscribe_resource("test://watched-resource")
        touched = await client.call_tool("touch_watched_resource", {})
        if era == "handshake":  # a 2026-era backend has no resources/subscribe: accepted, never fires
            assert touched.content[0].text == "notified"
            with anyio.fail_after(10):
                while not updates:
                    await anyio.sleep(0.05)
            assert updates == ["test://watched-resource"]
        await session.unsubscribe_resource("test://watched-resource")
        assert (await client.call_tool("touch_watched_resource", {})).content[0].text == "no subscribers"
        with pytest.raises(Exception, match="Unknown resource"):
            await session.subscribe_resource("test://nothing-here")


def test_dns_rebinding_is_refused(relay_gateway: GatewayProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    for path in ("/mcp", "/sse"):
        response = local_http.post(relay_gateway.base + path, json=body, headers={**headers, "host": "evil.example"})
        assert response.status_code == 421, path
    response = local_http.post(
        relay_gateway.base + "/mcp", json=body, headers={**headers, "origin": "http://evil.example"}
    )
    assert response.status_code == 403
    # introspection is Host-guarded too (issue 16)
    assert local_http.get(relay_gateway.base + "/health", headers={"host": "evil.example"}).status_code == 421


class _Peer(Peer):
    def __init__(self, key: object) -> None:
        self.key = key
        self.posted: list[dict[str, Any]] = []

    def post(self, message: dict[str, Any]) -> None:
        self.posted.append(message)


def test_relayed_traffic_goes_only_where_it_is_unambiguous() -> None:
    calls = InFlight()
    assert calls.route() is None
    alice, alice_again, bob = _Peer("alice"), _Peer("alice"), _Peer("bob")
    first = calls.enter(alice)
    second = calls.enter(alice_again)
    assert calls.route() is alice_again  # two calls of one client: either stream reaches it
    log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
    assert calls.forward_notification(log) and alice_again.posted == [log]
    third = calls.enter(bob)
    assert calls.route() is None  # two clients: nobody gets it
    assert not calls.forward_notification(log)
    for token in (first, second, third):
        calls.leave(token)
    assert not calls
