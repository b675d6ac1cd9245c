"""Live reload (issue 15 point 3): a real gateway over Streamable HTTP with a real MCP client connected; the
`--config` file is edited (or SIGHUP sent) under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client

from gateway.auth.keys import hash_token
from tests.gateway.conftest import client_for
from tests.gateway.security.conftest import ALICE, BOB, ENVELOPE, MODERN, rpc, tool_names
from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, child_env, stdio_echo_server, write_config
from tests.helpers.redis_proc import free_port


def _echo(**env: str) -> dict[str, Any]:
    server = stdio_echo_server()
    server["env"] = {**server["env"], **env}
    return server


def _write(path: Path, servers: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"mcpServers": servers}, indent=2))
    os.replace(tmp, path)  # an editor's atomic save


class Watcher:
    """Counts `notifications/*/list_changed` the client receives."""

    def __init__(self) -> None:
        self.tools_changed = 0

    async def __call__(self, message: object) -> None:
        if type(message).__name__ == "ToolListChangedNotification":
            self.tools_changed += 1

    async def heard(self) -> None:
        """Until a `tools/list_changed` has come: the session's stream may bring it after a `tools/list` the
        client polled already showed the change (the bound only bounds the wait)."""
        with anyio.fail_after(30):
            while self.tools_changed < 1:
                await anyio.sleep(0.05)


async def _pid(client: Client, tool: str) -> int:
    result = await client.call_tool(tool, {})
    assert result.structured_content is not None
    return int(result.structured_content["pid"])


async def _names(client: Client) -> set[str]:
    return {tool.name for tool in await client.list_tools()}


async def _until(client: Client, predicate: Callable[[set[str]], bool]) -> set[str]:
    with anyio.fail_after(30):
        while not predicate(names := await _names(client)):
            await anyio.sleep(0.1)
    return names


async def test_an_edited_config_applies_under_a_connected_client(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"keep": stdio_echo_server(), "gone": stdio_echo_server(), "change": _echo()})
    gateway = GatewayProcess(config)
    try:
        first = gateway.health()["config"]
        watcher = Watcher()
        async with client_for("http", gateway, config, mode="legacy", message_handler=watcher) as client:
            kept_pid = await _pid(client, "keep_whoami")
            changed_pid = await _pid(client, "change_whoami")
            assert {"gone_echo", "keep_echo", "change_echo"} <= await _names(client)

            _write(config, {"keep": stdio_echo_server(), "change": _echo(MARK="2"), "new": stdio_echo_server()})
            names = await _until(client, lambda n: "new_echo" in n and "change_echo" in n and "gone_echo" not in n)
            await watcher.heard()  # the same session heard of the change
            assert not any(name.startswith("gone_") for name in names)
            gone = await client.call_tool("gone_echo", {"text": "hi"}, raise_on_error=False)
            assert gone.is_error and "Unknown tool" in gone.content[0].text
            assert (await client.call_tool("new_echo", {"text": "fresh"})).content[0].text == "fresh"
            assert await _pid(client, "keep_whoami") == kept_pid  # unchanged: the same process
            assert await _pid(client, "change_whoami") != changed_pid  # changed: restarted

            health = gateway.health()
            assert set(health["backends"]) == {"keep", "change", "new"}
            assert health["config"]["hash"] != first["hash"]

            # an invalid file is refused with the start-up error, logged as one line; the old tools still work
            config.write_text('{"mcpServers": {"bad": {"command": 7}}}')
            with anyio.fail_after(30):
                while "reload refused" not in gateway.stderr:
                    await anyio.sleep(0.05)
            refused = [line for line in gateway.stderr.splitlines() if "reload refused" in line]
            at_start = subprocess.run(
                [sys.executable, "-m", "gateway", "check", "--config", str(config)],
                cwd=ROOT,
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert at_start.returncode == 2
            start_error = at_start.stderr.strip().removeprefix("mcp-gateway: ")
            assert start_error.startswith(f"config error: {config}: $.mcpServers.bad.command")
            assert len(refused) == 1 and start_error in refused[0]
            assert (await client.call_tool("new_echo", {"text": "still"})).content[0].text == "still"
            assert await _pid(client, "keep_whoami") == kept_pid
            assert gateway.health()["config"]["hash"] == health["config"]["hash"]
    finally:
        gateway.stop()


async def test_sighup_rereads_the_config(tmp_path: Path) -> None:
    """The config path is a symlink into another directory (as a ConfigMap's is): editing the target there
    is not seen by the watcher, so only SIGHUP can apply it."""
    real = tmp_path / "real"
    real.mkdir()
    target = write_config(real, {"keep": stdio_echo_server()})
    served = tmp_path / "conf"
    served.mkdir()
    config = served / "mcp.json"
    config.symlink_to(target)
    gateway = GatewayProcess(config)
    try:
        watcher = Watcher()
        async with client_for("http", gateway, config, mode="legacy", message_handler=watcher) as client:
            kept_pid = await _pid(client, "keep_whoami")
            target.write_text(json.dumps({"mcpServers": {"keep": stdio_echo_server(), "new": stdio_echo_server()}}))
            await anyio.sleep(1)  # longer than the watcher's debounce: it did not react
            assert "new_echo" not in await _names(client)
            gateway.proc.send_signal(signal.SIGHUP)
            await _until(client, lambda n: "new_echo" in n)
            await watcher.heard()
            assert await _pid(client, "keep_whoami") == kept_pid
            assert gateway.proc.poll() is None  # SIGHUP reloads, it does not stop the gateway
    finally:
        gateway.stop()


def _leaky() -> dict[str, Any]:
    return {"command": "python", "args": ["-m", "tests.backends.leaky"], "env": {"PYTHONPATH": str(ROOT)}}


async def test_prompts_and_resources_follow_a_reload(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"keep": stdio_echo_server()})
    gateway = GatewayProcess(config)
    try:
        heard: list[str] = []

        async def on_message(message: object) -> None:
            heard.append(type(message).__name__)

        async with client_for("http", gateway, config, mode="legacy", message_handler=on_message) as client:
            assert await client.list_prompts() == []
            _write(config, {"keep": stdio_echo_server(), "notes": _leaky()})
            with anyio.fail_after(30):
                while "notes_greeting" not in {p.name for p in await client.list_prompts()}:
                    await anyio.sleep(0.1)
            # the session's stream may bring the notifications after the polled list shows the change: wait for
            # them (bounded), so notifications that never come still fail the test
            wanted = {"PromptListChangedNotification", "ResourceListChangedNotification"}
            with anyio.move_on_after(10):
                while not wanted <= set(heard):
                    await anyio.sleep(0.05)
            assert wanted <= set(heard)
            rendered = await client.get_prompt("notes_greeting", {"name": "Ada"})
            assert "Hello, Ada." in str(rendered.messages[0].content)
            assert [str(r.uri) for r in await client.list_resources()] == ["notes://notes/today"]

            _write(config, {"keep": stdio_echo_server()})
            with anyio.fail_after(30):
                while await client.list_prompts():
                    await anyio.sleep(0.1)
            assert await client.list_resources() == []
    finally:
        gateway.stop()


# ------------------------------------------------------------------ what depends on the config besides servers

CAROL = "carol-0123456789abcdefghijklmnopqrstuvwxyz"
RELOADED_SECRET = "reloaded-secret-2b7e9d4c1a30f865"  # only the reloaded config's server env holds it


def _call(gateway: GatewayProcess, token: str, method: str, params: dict[str, Any], path: str = "/mcp") -> Any:
    """One stateless (2026-07-28) JSON-RPC request as `token`'s client: the HTTP answer."""
    params = {**params, "_meta": ENVELOPE}
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
        "Authorization": f"Bearer {token}",
    }
    if method == "tools/call":
        headers["Mcp-Name"] = params["name"]
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return local_http.post(gateway.base + path, json=body, headers=headers, timeout=30)


def _listed(gateway: GatewayProcess, token: str, path: str = "/mcp") -> set[str]:
    answer = _call(gateway, token, "tools/list", {}, path)
    assert answer.status_code == 200, answer.text
    return {tool["name"] for tool in answer.json()["result"]["tools"]}


def _document(servers: dict[str, Any], gateway: dict[str, Any]) -> str:
    return json.dumps({"mcpServers": servers, "gateway": gateway}, indent=2)


def _edit(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _reloads(gateway: GatewayProcess, before: str) -> dict[str, Any]:
    """/health once the loaded config's hash is no longer `before`."""
    return gateway.wait_for(lambda health: health["config"]["hash"] != before, 60)


def _refusals(gateway: GatewayProcess, count: int) -> list[str]:
    deadline = time.monotonic() + 60
    while len(lines := [line for line in gateway.stderr.splitlines() if "reload refused" in line]) < count:
        assert time.monotonic() < deadline, gateway.stderr[-2000:]
        time.sleep(0.05)
    return lines


def test_a_reload_refreshes_keys_allow_lists_secrets_profiles_and_overrides(tmp_path: Path) -> None:
    leaky = {**_leaky(), "env": {**_leaky()["env"], "ECHO_API_TOKEN": RELOADED_SECRET}}
    clients = {
        "alice": {"token_sha256": hash_token(ALICE)},
        "bob": {"token_sha256": hash_token(BOB), "allow": ["keep_echo"]},
    }
    first = {"auth": {"clients": clients}, "profiles": {"one": {"tools": ["keep_echo"]}}}
    config = write_config(tmp_path, {"keep": stdio_echo_server()}, first)
    gateway = GatewayProcess(config)
    try:
        pid = json.loads(_call(gateway, ALICE, "tools/call", {"name": "keep_whoami", "arguments": {}}).text)
        pid = pid["result"]["structuredContent"]["pid"]
        assert _listed(gateway, BOB) == {"keep_echo"}
        assert _call(gateway, CAROL, "tools/list", {}).status_code == 401
        assert _call(gateway, ALICE, "tools/list", {}, "/mcp/two").status_code == 404
        before = gateway.health()["config"]["hash"]

        servers = {"keep": {**stdio_echo_server(), "tools": {"add": {"name": "plus"}}}, "leaky": leaky}
        clients = {
            **clients,
            "bob": {"token_sha256": hash_token(BOB), "allow": ["keep_*"]},
            "carol": {"token_sha256": hash_token(CAROL), "allow": ["leaky_*"]},
        }
        profiles = {"one": {"tools": ["keep_echo"]}, "two": {"tools": ["leaky_*"]}}
        _edit(config, _document(servers, {"auth": {"clients": clients}, "profiles": profiles}))
        _reloads(gateway, before)
        gateway.wait_for(lambda health: health["backends"]["leaky"]["state"] == "up")

        assert _listed(gateway, CAROL) == {"leaky_leak"}  # a new client's key
        assert "keep_plus" in _listed(gateway, BOB) and "keep_add" not in _listed(gateway, BOB)  # a new allow list
        assert _listed(gateway, ALICE, "/mcp/two") == {"leaky_leak"}  # a new profile
        assert _listed(gateway, BOB, "/mcp/one") == {"keep_echo"}
        answer = _call(gateway, ALICE, "tools/call", {"name": "keep_plus", "arguments": {"a": 2, "b": 3}})
        assert answer.json()["result"]["structuredContent"]["result"] == 5  # the override, renamed ...
        after = _call(gateway, ALICE, "tools/call", {"name": "keep_whoami", "arguments": {}}).json()
        assert after["result"]["structuredContent"]["pid"] == pid  # ... without restarting the backend
        leaked = _call(gateway, CAROL, "tools/call", {"name": "leaky_leak", "arguments": {}}).json()["result"]
        assert leaked["isError"] and "[REDACTED]" in leaked["content"][0]["text"]
        assert RELOADED_SECRET not in json.dumps(leaked)  # the new server's secret is scrubbed
        time.sleep(0.2)  # the leaky backend's stderr line reaches the gateway's log
        assert RELOADED_SECRET not in gateway.stderr
    finally:
        gateway.stop()


SERVE_HTTP = [sys.executable, "-m", "gateway", "serve", "--transport", "http"]


def _start_error(config: Path) -> str:
    """The one line `serve` exits with (2) on `config` at start-up, without `mcp-gateway: `."""
    done = subprocess.run(
        [*SERVE_HTTP, "--config", str(config), "--port", str(free_port())],
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    return done.stderr.strip().splitlines()[-1].removeprefix("mcp-gateway: ")


def test_clashing_tool_names_are_refused_and_tool_search_follows_a_reload(tmp_path: Path) -> None:
    servers = {"a": stdio_echo_server(), "b": stdio_echo_server()}
    config = write_config(tmp_path, servers)
    gateway = GatewayProcess(config)
    try:
        hash_before = gateway.health()["config"]["hash"]
        # a rename that lands on a name already taken: refused as at start, the old config keeps serving
        _edit(config, _document({**servers, "a": {**stdio_echo_server(), "tools": {"add": {"name": "echo"}}}}, {}))
        [refused] = _refusals(gateway, 1)
        start_error = _start_error(config)
        assert start_error.startswith(f"config error: {config}: $.mcpServers.a.tools.add: ")
        assert start_error in refused
        assert gateway.health()["config"]["hash"] == hash_before
        assert "a_add" in tool_names(rpc(gateway, "tools/list"))
        assert set(gateway.health()["backends"]) == {"a", "b"}

        # tool search turned on: tools/list shows the meta-tools, search finds a tool, which still works
        search = {"discovery": {"mode": "search", "embedder": "hash"}}
        _edit(config, _document(servers, search))
        _reloads(gateway, hash_before)
        assert tool_names(rpc(gateway, "tools/list")) == {"search_tools", "call_tool"}
        found = rpc(gateway, "tools/call", {"name": "search_tools", "arguments": {"query": "add two integers"}})
        assert "a_add" in found.json()["result"]["content"][0]["text"]
        hash_search = gateway.health()["config"]["hash"]

        # in search mode, a tool exposed under a meta-tool's name is refused too
        renamed = {**servers, "b": {**stdio_echo_server(), "tools": {"echo": {"name": "tools"}}, "namespace": "search"}}
        _edit(config, _document(renamed, search))
        refused = _refusals(gateway, 2)[-1]
        assert f"config error: {config}: $.mcpServers.b.tools.echo: " in refused and "meta-tool" in refused
        assert gateway.health()["config"]["hash"] == hash_search
        inner = {"name": "b_echo", "arguments": {"text": "still b"}}
        called = rpc(gateway, "tools/call", {"name": "call_tool", "arguments": inner})
        assert called.json()["result"]["content"][0]["text"] == "still b"  # b's echo, under its old name
    finally:
        gateway.stop()


def test_other_files_beside_the_config_do_not_wake_the_watcher(tmp_path: Path) -> None:
    """Only the config file (or a ConfigMap's `..data` swap) is a change: a log or data file written in the
    config's directory is not. Before, every write there woke the watcher and watchfiles logged "1 change
    detected" at INFO, so a gateway logging into its config directory woke itself about ten times a second."""
    servers = {"one": stdio_echo_server()}
    config = write_config(tmp_path, servers)
    gateway = GatewayProcess(config, MCP_GATEWAY_LOG_LEVEL="INFO")
    try:
        neighbour = tmp_path / "gateway.log"
        for line in range(5):
            with neighbour.open("a") as log:
                log.write(f"line {line}\n")
            time.sleep(0.1)
        (tmp_path / "scratch.tmp").write_text("{}")
        hash_before = gateway.health()["config"]["hash"]
        _edit(config, _document({**servers, "two": stdio_echo_server()}, {}))  # the config itself: reloaded
        _reloads(gateway, hash_before)
        assert "change detected" not in gateway.stderr
    finally:
        gateway.stop()


def test_a_configmap_swap_is_reloaded(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as `mcp.json -> ..data/mcp.json` with `..data` a symlink to a
    timestamped directory, and updates it by swapping `..data`: the file itself is never written."""
    servers = {"one": stdio_echo_server()}
    first = tmp_path / "..2026_12_01_a"
    first.mkdir()
    write_config(first, servers)
    (tmp_path / "..data").symlink_to(first.name)
    config = tmp_path / "mcp.json"
    config.symlink_to("..data/mcp.json")
    gateway = GatewayProcess(config)
    try:
        hash_before = gateway.health()["config"]["hash"]
        second = tmp_path / "..2026_12_01_b"
        second.mkdir()
        write_config(second, {**servers, "two": stdio_echo_server()})
        (tmp_path / "..data_tmp").symlink_to(second.name)
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # the kubelet's atomic swap
        assert "two" in _reloads(gateway, hash_before)["backends"]
    finally:
        gateway.stop()
