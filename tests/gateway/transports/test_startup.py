"""Answer at once (issue 16, point 2): over stdio and HTTP the gateway completes `initialize` and `tools/list`
with the backends that are up; a backend that is still starting is absent, then announced with
`notifications/tools/list_changed`; a call for its tool made before it is up waits for it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, child_env, stdio_echo_server, write_config
from tests.helpers.redis_proc import orphan_guarded
from tests.helpers.stdio import StdioGateway

STARTS_AFTER = "import time, runpy; time.sleep({}); runpy.run_module('tests.backends.echo', run_name='__main__')"


def slow_echo(seconds: float) -> dict[str, Any]:
    """The echo backend, starting `seconds` late (as ai_memory does while it loads its model)."""
    return {"command": "python", "args": ["-c", STARTS_AFTER.format(seconds)], "env": {"PYTHONPATH": str(ROOT)}}


def tool_names(answer: dict[str, Any]) -> set[str]:
    return {tool["name"] for tool in answer["result"]["tools"]}


def test_stdio_answers_before_a_slow_backend_is_up_and_announces_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"fast": stdio_echo_server(), "slow": slow_echo(6)})
    gateway = StdioGateway(config)
    try:
        info = gateway.initialize()
        assert info["serverInfo"]["name"] == "mcp-gateway"
        assert info["capabilities"]["tools"]["listChanged"] is True
        first = tool_names(gateway.answer(gateway.request("tools/list")))
        assert not any(name.startswith("slow_") for name in first)  # not up yet: absent

        # a call for the slow backend's tool, sent before that backend is up, waits for it
        call = gateway.request("tools/call", {"name": "slow_echo", "arguments": {"text": "waited"}})
        seen: list[dict[str, Any]] = []
        result = gateway.answer(call, seen)["result"]
        assert result.get("isError") is not True and result["content"][0]["text"] == "waited"
        assert {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"} in seen  # announced first
        assert {"slow_echo", "fast_echo"} <= tool_names(gateway.answer(gateway.request("tools/list")))
    finally:
        gateway.close()


def test_http_serves_before_a_slow_backend_is_up(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"fast": stdio_echo_server(), "slow": slow_echo(8)})
    gateway = GatewayProcess(config, wait_path=None)  # /ready is not awaited: the test polls tools/list
    try:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/list",
        }
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}})
        deadline = time.monotonic() + 60
        while True:
            try:
                response = local_http.post(gateway.base + "/mcp", content=body, headers=headers, timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and gateway.proc.poll() is None
                time.sleep(0.05)
        assert response.status_code == 200, response.text
        assert not any(name.startswith("slow_") for name in tool_names(response.json()))
        health = local_http.get(gateway.base + "/health", timeout=5).json()
        assert health["backends"]["slow"]["state"] == "starting"
        assert local_http.get(gateway.base + "/ready", timeout=5).status_code == 503  # not every backend tried yet
    finally:
        gateway.stop()


def test_stdio_on_dev_null_reads_eof_and_exits_cleanly_under_uvloop(tmp_path: Path) -> None:
    """A service manager, `docker run` without `-i` or a CI job hands the gateway /dev/null as stdin (and
    often as stdout): that is EOF at once, so the gateway starts, sees no client, drains and exits 0. The
    event loop cannot poll /dev/null (epoll refuses it), and on uvloop, the default loop, polling it aborted
    the process with SIGABRT (exit 134) and no line."""
    config = write_config(tmp_path, {"echo": stdio_echo_server()})
    done = subprocess.run(
        orphan_guarded([sys.executable, "-m", "gateway", "serve", "--config", str(config)]),
        cwd=ROOT,
        env=child_env(MCP_GATEWAY_LOG_LEVEL="INFO"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.rstrip().endswith("shutdown: backends closed")
