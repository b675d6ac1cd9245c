"""Tool search (`gateway.discovery.mode: search`) end to end: a real gateway process, real MCP clients of
both protocol eras over Streamable HTTP and SSE, two clients with different allow lists."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.keys import hash_token
from gateway.routing.discovery import parse_call, parse_search
from tests.gateway.security.conftest import ALICE, BOB, LIMITED, PATHS, client, rpc
from tests.helpers.procs import ROOT, GatewayProcess, child_env, stdio_echo_server, write_config
from tests.helpers.redis_proc import free_port

META = {"search_tools", "call_tool"}
COUNTED = "counted-0123456789abcdefghijklmnopqrstuvwxyz"


def auth() -> dict[str, Any]:
    return {
        "clients": {
            "alice": {"token_sha256": hash_token(ALICE), "deny": ["local_add"]},
            "bob": {"token_sha256": hash_token(BOB), "allow": ["local_echo"]},
            "limited": {"token_sha256": hash_token(LIMITED)},
            "counted": {"token_sha256": hash_token(COUNTED), "rate_limit": {"per_minute": 1, "burst": 3}},
        }
    }


@pytest.fixture(scope="module")
def searching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = write_config(tmp_path_factory.mktemp("search"), {"local": stdio_echo_server()}, {"auth": auth()})
    process = GatewayProcess(config, MCP_GATEWAY_DISCOVERY__MODE="search")  # the env name turns it on
    try:
        yield process
    finally:
        process.stop()


def found(result: Any) -> list[str]:
    """Tool names in a `search_tools` result (raw dict or the client's model)."""
    content = result["content"] if isinstance(result, dict) else [block.model_dump() for block in result.content]
    tools = json.loads(content[0]["text"])["tools"]
    for tool in tools:
        assert set(tool) == {"name", "description", "inputSchema"}
    return [tool["name"] for tool in tools]


def call(gateway: GatewayProcess, token: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    response = rpc(gateway, "tools/call", {"name": name, "arguments": arguments}, token=token)
    assert response.status_code == 200, response.text
    return response.json()["result"]


@pytest.mark.parametrize(("transport", "mode"), PATHS)
async def test_search_mode_lists_only_the_meta_tools(searching: GatewayProcess, transport: str, mode: str) -> None:
    async with client(searching, ALICE, transport, mode) as session:
        assert {tool.name for tool in await session.list_tools()} == META
        answer = await session.call_tool("search_tools", {"query": "return the text unchanged"})
        assert found(answer)[0] == "local_echo"
        echoed = await session.call_tool("call_tool", {"name": "local_echo", "arguments": {"text": transport}})
        assert echoed.content[0].text == transport
        direct = await session.call_tool("local_echo", {"text": "by name"})  # every tool stays callable
        assert direct.content[0].text == "by name"


def test_search_never_returns_a_tool_the_caller_cannot_call(searching: GatewayProcess) -> None:
    query = {"query": "add two integers", "limit": 10}
    assert found(call(searching, LIMITED, "search_tools", query))[0] == "local_add"  # allowed: the best match
    assert "local_add" not in found(call(searching, ALICE, "search_tools", query))  # denied to alice
    both = {"query": "add two integers, or echo a text back", "limit": 10}
    assert "local_add" in found(call(searching, LIMITED, "search_tools", both))
    alice = found(call(searching, ALICE, "search_tools", both))
    assert "local_echo" in alice and "local_add" not in alice
    assert found(call(searching, BOB, "search_tools", both)) == ["local_echo"]  # bob may call only this
    denied = call(searching, ALICE, "call_tool", {"name": "local_add", "arguments": {"a": 1, "b": 2}})
    assert denied["isError"] and denied["content"][0]["text"] == "Unknown tool: 'local_add'"
    assert call(searching, BOB, "call_tool", {"name": "local_whoami"})["content"][0]["text"] == (
        "Unknown tool: 'local_whoami'"
    )


def test_call_tool_is_the_same_path_as_tools_call(searching: GatewayProcess) -> None:
    added = call(searching, ALICE, "call_tool", {"name": "local_echo", "arguments": {"text": "x"}})
    assert added["content"][0]["text"] == "x"
    invalid = call(searching, ALICE, "call_tool", {"name": "local_echo", "arguments": {"text": 3}})
    assert invalid["isError"] and "Invalid arguments for tool 'local_echo'" in invalid["content"][0]["text"]
    bad = call(searching, ALICE, "call_tool", {"name": "local_echo", "arguments": "text"})
    assert bad["isError"] and bad["content"][0]["text"] == "call_tool: 'arguments' must be an object"
    assert call(searching, ALICE, "search_tools", {"query": ""})["isError"]
    assert call(searching, ALICE, "call_tool", {"name": "call_tool", "arguments": {}})["isError"]


def test_the_rate_limit_counts_the_inner_call(searching: GatewayProcess) -> None:
    """A burst of 3: three `call_tool` calls go through (one token each, not two), the fourth is refused."""
    texts = [
        call(searching, COUNTED, "call_tool", {"name": "local_add", "arguments": {"a": 1, "b": i}})["content"][0][
            "text"
        ]
        for i in range(4)
    ]
    assert texts[:3] == ["1", "2", "3"]
    assert texts[3].startswith("Rate limit exceeded for client 'counted'")


def test_all_mode_is_the_default(tmp_path: Path) -> None:
    gateway = GatewayProcess(write_config(tmp_path, {"local": stdio_echo_server()}))
    try:
        response = rpc(gateway, "tools/list")
        names = {tool["name"] for tool in response.json()["result"]["tools"]}
        assert "local_echo" in names and not names & META
        assert call_plain(gateway, "search_tools")["isError"]
    finally:
        gateway.stop()


def call_plain(gateway: GatewayProcess, name: str) -> dict[str, Any]:
    return rpc(gateway, "tools/call", {"name": name, "arguments": {"query": "x"}}).json()["result"]


def test_a_backend_tool_named_like_a_meta_tool_is_a_config_error(tmp_path: Path) -> None:
    server = {**stdio_echo_server(), "namespace": "", "tools": {"echo": {"name": "call_tool"}}}
    config = write_config(tmp_path, {"local": server}, {"discovery": {"mode": "search"}})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config),
            "--transport",
            "http",
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("mcp-gateway: config error:")]
    assert errors == [
        f"mcp-gateway: config error: {config}: $.mcpServers.local.tools.echo: tool local.echo would be exposed as "
        "'call_tool', the name of a tool-search meta-tool; rename it in mcpServers"
    ]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=8,
    )
)
def test_meta_tool_arguments_of_any_shape_parse_or_are_refused_clearly(arguments: Any) -> None:
    for parse in (parse_search, parse_call):
        parsed = parse(arguments)
        assert isinstance(parsed, str | tuple)
        if isinstance(parsed, str):
            assert parsed.startswith(("search_tools", "call_tool"))


@given(
    st.dictionaries(
        st.sampled_from(["query", "limit", "name", "arguments"]),
        st.none() | st.integers(-3, 60) | st.text(max_size=5) | st.dictionaries(st.text(), st.text()),
    )
)
def test_parsed_meta_arguments_are_well_typed(arguments: dict[str, Any]) -> None:
    search = parse_search(arguments)
    if isinstance(search, tuple):
        assert isinstance(search[0], str) and search[0].strip() and 1 <= search[1] <= 50
    called = parse_call(arguments)
    if isinstance(called, tuple):
        assert isinstance(called[0], str) and called[0] and isinstance(called[1], dict)


async def test_the_benchmark_catalog_holds_every_task_tool() -> None:
    """`bench.discovery`: ≥ 300 tools, ≥ 100 tasks, and each task names tools that exist."""
    from bench.discovery.catalog import SPECS, catalog
    from bench.discovery.tasks import TASKS
    from gateway.routing.catalog import exposed_name

    if not SPECS.is_dir():
        pytest.skip(f"the vendors' specs are not at {SPECS}")
    names = {exposed_name(server, tool["name"]) for server, tools in (await catalog()).items() for tool in tools}
    assert len(names) >= 300 and len(TASKS) >= 100
    assert {tool for _, needed in TASKS for tool in needed} <= names


def test_a_gateway_without_search_imports_no_numpy_and_no_embedding_model() -> None:
    """The index (numpy, rank_bm25, the embedding code) loads only in search mode."""
    probe = (
        "import sys, gateway.serve, gateway.cli; from gateway.routing.hub import Hub; "
        "from gateway.config.loader import load_config; "
        "Hub(load_config(sys.argv[1], {})); "
        "print(sorted(m for m in ('numpy', 'rank_bm25', 'embedding.embedder') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "config" / "mcp.json")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=child_env(),
    )
    assert done.stdout.strip() == "[]"
