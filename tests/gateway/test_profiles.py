"""Profiles (`gateway.profiles`) at `/mcp/NAME`, `/sse/NAME` and `serve --transport stdio --profile NAME`, and
per-server tool overrides (`mcpServers.<name>.tools`), end to end through real gateway processes and clients."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import SSETransport, StdioTransport, StreamableHttpTransport

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, BOB, rpc, tool_names
from tests.helpers.procs import ROOT, GatewayProcess, child_env, stdio_echo_server, write_config
from tests.helpers.redis_proc import free_port

OVERRIDES = {"echo": {"name": "say", "description": "Say the text back."}, "crash": {"disabled": True}}
PROFILES = {"mathy": {"tools": ["local_add", "local_say"]}, "ops": {"tools": ["local_who*"]}}


def servers() -> dict[str, Any]:
    return {"local": {**stdio_echo_server(), "tools": OVERRIDES}}


def auth() -> dict[str, Any]:
    return {
        "clients": {
            "alice": {"token_sha256": hash_token(ALICE), "deny": ["local_add"]},
            "bob": {"token_sha256": hash_token(BOB)},
        }
    }


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = write_config(tmp_path_factory.mktemp("profiles"), servers(), {"auth": auth(), "profiles": PROFILES})
    process = GatewayProcess(config)
    try:
        yield process
    finally:
        process.stop()


def http_client(gateway: GatewayProcess, token: str, path: str, mode: str = "auto") -> Client:
    headers = {"Authorization": f"Bearer {token}"}
    if path.startswith("/sse"):
        return Client(SSETransport(gateway.base + path, headers=headers), mode=mode)  # type: ignore[arg-type]
    return Client(StreamableHttpTransport(gateway.base + path, headers=headers), mode=mode)  # type: ignore[arg-type]


def test_overrides_rename_redescribe_and_hide(profiled: GatewayProcess) -> None:
    response = rpc(profiled, "tools/list", token=BOB)
    names = tool_names(response)
    assert "local_say" in names and "local_echo" not in names and "local_crash" not in names
    say = next(tool for tool in response.json()["result"]["tools"] if tool["name"] == "local_say")
    assert say["description"] == "Say the text back."
    called = rpc(profiled, "tools/call", {"name": "local_say", "arguments": {"text": "hi"}}, token=BOB)
    assert called.json()["result"]["content"][0]["text"] == "hi"
    for hidden in ("local_echo", "local_crash"):  # neither the old name nor a hidden tool can be called
        refused = rpc(profiled, "tools/call", {"name": hidden, "arguments": {}}, token=BOB).json()["result"]
        assert refused["isError"] and refused["content"][0]["text"] == f"Unknown tool: '{hidden}'"


@pytest.mark.parametrize(("path", "mode"), [("/mcp/mathy", "auto"), ("/mcp/mathy", "legacy"), ("/sse/mathy", "legacy")])
async def test_a_profile_is_the_intersection_with_the_allow_list(
    profiled: GatewayProcess, path: str, mode: str
) -> None:
    async with http_client(profiled, BOB, path, mode) as session:
        assert {tool.name for tool in await session.list_tools()} == {"local_add", "local_say"}
        assert (await session.call_tool("local_add", {"a": 2, "b": 3})).content[0].text == "5"
        outside = await session.call_tool("local_whoami", {}, raise_on_error=False)
        assert outside.is_error and outside.content[0].text == "Unknown tool: 'local_whoami'"
    async with http_client(profiled, ALICE, path, mode) as session:  # alice is denied local_add
        assert {tool.name for tool in await session.list_tools()} == {"local_say"}
        denied = await session.call_tool("local_add", {"a": 2, "b": 3}, raise_on_error=False)
        assert denied.is_error and denied.content[0].text == "Unknown tool: 'local_add'"
    async with http_client(profiled, BOB, path.replace("mathy", "ops"), mode) as session:
        assert {tool.name for tool in await session.list_tools()} == {"local_whoami"}


def test_the_plain_endpoint_is_unchanged_and_auth_still_applies(profiled: GatewayProcess) -> None:
    assert {"local_add", "local_say", "local_whoami"} <= tool_names(rpc(profiled, "tools/list", token=BOB))
    with httpx.Client(base_url=profiled.base, timeout=10) as http:
        assert http.post("/mcp/mathy", json={}).status_code == 401
        assert http.get("/sse/mathy").status_code == 401


def test_an_unknown_profile_is_404(profiled: GatewayProcess) -> None:
    with httpx.Client(base_url=profiled.base, timeout=10) as http:
        headers = {"Authorization": f"Bearer {BOB}"}
        for path in ("/mcp/nope", "/mcp/nope/", "/sse/nope"):
            response = http.request("POST" if path.startswith("/mcp") else "GET", path, headers=headers)
            assert response.status_code == 404, path
            assert response.json()["error"] == "not_found"
        assert http.post("/messages/?profile=nope&session_id=00", content=b"{}", headers=headers).status_code == 404


async def test_a_profile_over_stdio(tmp_path: Path) -> None:
    config = write_config(tmp_path, servers(), {"profiles": PROFILES})
    transport = StdioTransport(
        sys.executable,
        ["-m", "gateway", "serve", "--config", str(config), "--profile", "mathy"],
        env=child_env(),
        cwd=str(ROOT),
    )
    async with Client(transport) as session:
        # over stdio the gateway answers before its backends are up; they join (tools/list_changed) as they come
        with anyio.fail_after(60):
            while not (tools := {tool.name for tool in await session.list_tools()}):
                await anyio.sleep(0.1)
        assert tools == {"local_add", "local_say"}
        assert (await session.call_tool("local_say", {"text": "stdio"})).content[0].text == "stdio"
        outside = await session.call_tool("local_whoami", {}, raise_on_error=False)
        assert outside.is_error


def serve_fails(config: Path, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith("mcp-gateway:")]


def test_an_unknown_stdio_profile_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, servers(), {"profiles": PROFILES})
    assert serve_fails(config, "--profile", "nope") == [
        "mcp-gateway: unknown profile 'nope' (gateway.profiles: mathy, ops)"
    ]


def test_a_renamed_tool_that_collides_is_a_config_error(tmp_path: Path) -> None:
    server = {**stdio_echo_server(), "tools": {"echo": {"name": "add"}}}  # local_add exists already
    config = write_config(tmp_path, {"local": server})
    assert serve_fails(config, "--transport", "http", "--port", str(free_port())) == [
        f"mcp-gateway: config error: {config}: $.mcpServers.local.tools.echo: local.echo and local.add would both "
        "be exposed as 'local_add'"
    ]


@pytest.mark.parametrize("name", ["has space", "x" * 65, ""])
def test_a_new_name_is_validated(tmp_path: Path, name: str) -> None:
    config = write_config(tmp_path, {"local": {**stdio_echo_server(), "tools": {"echo": {"name": name}}}})
    assert serve_fails(config) == [
        f"mcp-gateway: config error: {config}: $.mcpServers.local.tools.echo.name: "
        "'name' must match ^[a-zA-Z0-9_-]{1,64}$"
    ]
