"""Per-client allow/deny lists: `tools/list` hides what a client may not call, and calling it is refused
exactly like an unknown tool, on the fast path and on FastMCP's path, over every HTTP transport. Backends'
prompts, resources and templates follow the same lists, by their exposed name `<server>_<name>`."""

from __future__ import annotations

import pytest

from tests.gateway.security.conftest import ALICE, BOB, PATHS, client, rpc, tool_names
from tests.helpers.procs import GatewayProcess


def test_fast_path_list_shows_each_client_its_tools(secured: GatewayProcess) -> None:
    alice = tool_names(rpc(secured, "tools/list", token=ALICE))
    assert "local_echo" in alice and "local_add" not in alice and "local_crash" in alice
    assert tool_names(rpc(secured, "tools/list", token=BOB)) == {"local_echo", "leaky_leak"}


def test_fast_path_denied_call_is_answered_like_an_unknown_tool(secured: GatewayProcess) -> None:
    denied = rpc(secured, "tools/call", {"name": "local_add", "arguments": {"a": 1, "b": 2}}, token=ALICE)
    unknown = rpc(secured, "tools/call", {"name": "local_nope", "arguments": {"a": 1, "b": 2}}, token=ALICE)
    assert denied.status_code == unknown.status_code == 200
    denied_result, unknown_result = denied.json()["result"], unknown.json()["result"]
    assert denied_result["isError"] is True
    assert denied_result["content"][0]["text"] == "Unknown tool: 'local_add'"
    assert unknown_result["content"][0]["text"] == "Unknown tool: 'local_nope'"
    assert denied_result.keys() == unknown_result.keys()
    # bob's `!local_crash` is a deny entry too; the backend must still be up afterwards
    crash = rpc(secured, "tools/call", {"name": "local_crash", "arguments": {}}, token=BOB)
    assert crash.json()["result"]["content"][0]["text"] == "Unknown tool: 'local_crash'"
    allowed = rpc(secured, "tools/call", {"name": "local_add", "arguments": {"a": 1, "b": 2}}, token=BOB)
    assert allowed.json()["result"]["content"][0]["text"] == "Unknown tool: 'local_add'"
    ok = rpc(secured, "tools/call", {"name": "local_echo", "arguments": {"text": "hi"}}, token=BOB)
    assert ok.json()["result"]["content"][0]["text"] == "hi"


def test_fastmcp_path_paginated_list_is_filtered_too(secured: GatewayProcess) -> None:
    """A `tools/list` with a cursor is not a fast-path request: FastMCP answers it, filtered."""
    response = rpc(secured, "tools/list", {"cursor": "0"}, token=BOB)
    assert response.status_code in (200, 400), response.text
    body = response.json()
    if "result" in body:
        assert {tool["name"] for tool in body["result"]["tools"]} <= {"local_echo", "leaky_leak"}


@pytest.mark.parametrize(("transport", "mode"), PATHS)
async def test_denied_tool_hidden_and_refused_like_unknown(secured: GatewayProcess, transport: str, mode: str) -> None:
    async with client(secured, BOB, transport, mode) as session:
        names = {tool.name for tool in await session.list_tools()}
        assert names == {"local_echo", "leaky_leak"}
        denied_error = unknown_error = None
        try:
            denied = await session.call_tool("local_add", {"a": 1, "b": 2}, raise_on_error=False)
        except Exception as error:  # FastMCP's path may answer a JSON-RPC error for an unknown tool
            denied, denied_error = None, str(error)
        try:
            unknown = await session.call_tool("local_nope", {"a": 1, "b": 2}, raise_on_error=False)
        except Exception as error:
            unknown, unknown_error = None, str(error)
        if denied is None or unknown is None:
            assert denied is None and unknown is None
            assert denied_error is not None and unknown_error is not None
            assert denied_error.replace("local_add", "X") == unknown_error.replace("local_nope", "X")
        else:
            assert denied.is_error and unknown.is_error
            denied_text = denied.content[0].text.replace("local_add", "X")
            assert denied_text == unknown.content[0].text.replace("local_nope", "X")
        echoed = await session.call_tool("local_echo", {"text": "allowed"})
        assert echoed.content[0].text == "allowed"
    async with client(secured, ALICE, transport, mode) as session:
        names = {tool.name for tool in await session.list_tools()}
        assert "local_add" not in names and "local_whoami" in names


async def _refusal(call) -> str:  # type: ignore[no-untyped-def]
    try:
        await call
    except Exception as error:
        return str(error)
    raise AssertionError("expected the request to be refused")


@pytest.mark.parametrize(("transport", "mode"), PATHS)
async def test_prompts_and_resources_follow_the_allow_lists(secured: GatewayProcess, transport: str, mode: str) -> None:
    # alice (deny local_add) sees leaky's prompt, resource and template, and can use them
    async with client(secured, ALICE, transport, mode) as session:
        assert {p.name for p in await session.list_prompts()} == {"leaky_greeting"}
        assert {str(r.uri) for r in await session.list_resources()} == {"notes://leaky/today"}
        assert {t.uri_template for t in await session.list_resource_templates()} == {"notes://leaky/day/{day}"}
        prompt = await session.get_prompt("leaky_greeting", {"name": "Ada"})
        assert prompt.messages[0].content.text == "Hello, Ada."
        assert (await session.read_resource("notes://leaky/today"))[0].text == "nothing planned"
        assert (await session.read_resource("notes://leaky/day/monday"))[0].text == "notes for monday"
    # bob (allow local_echo, leaky_leak) sees none of them, and using them fails like an unknown name
    async with client(secured, BOB, transport, mode) as session:
        assert await session.list_prompts() == []
        assert await session.list_resources() == []
        assert await session.list_resource_templates() == []
        denied = await _refusal(session.get_prompt("leaky_greeting", {"name": "Ada"}))
        unknown = await _refusal(session.get_prompt("leaky_nope", {"name": "Ada"}))
        assert denied.replace("leaky_greeting", "X") == unknown.replace("leaky_nope", "X")
        denied = await _refusal(session.read_resource("notes://leaky/today"))
        unknown = await _refusal(session.read_resource("notes://leaky/nope"))
        assert denied.replace("today", "X") == unknown.replace("nope", "X")
        assert "nothing planned" not in denied
        assert await _refusal(session.read_resource("notes://leaky/day/monday"))
