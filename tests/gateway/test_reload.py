"""Live reload (issue 15 point 3): a real gateway over Streamable HTTP with a real MCP client connected; the
`--config` file is edited (or SIGHUP sent) under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client

from tests.gateway.conftest import client_for
from tests.helpers.procs import ROOT, GatewayProcess, child_env, stdio_echo_server, write_config


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
            assert watcher.tools_changed >= 1  # the same session heard of the change
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
            assert watcher.tools_changed >= 1
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
            assert {"PromptListChangedNotification", "ResourceListChangedNotification"} <= set(heard)
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
