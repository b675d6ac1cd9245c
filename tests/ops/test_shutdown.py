"""SIGTERM drains a replica: /ready turns 503, calls in flight finish, backends are closed, exit code 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, child_env, stdio_echo_server, write_config


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes only once reaped; check its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


async def test_sigterm_drains_http_replica(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {"local": stdio_echo_server()},
        gateway={"drain_seconds": 1.0, "shutdown_timeout": 20},
    )
    gateway = GatewayProcess(config, MCP_GATEWAY_LOG_LEVEL="INFO")
    try:
        ready_codes: list[int] = []
        async with Client(StreamableHttpTransport(gateway.base + "/mcp")) as client:
            backend_pid = (await client.call_tool("local_whoami", {})).structured_content["pid"]  # type: ignore[index]
            assert _alive(backend_pid)
            outcome: dict[str, object] = {}

            async def slow_call() -> None:
                outcome["result"] = await client.call_tool("local_sleep", {"seconds": 3}, raise_on_error=False)

            async with anyio.create_task_group() as group:
                group.start_soon(slow_call)
                await anyio.sleep(0.5)  # the call is in flight
                gateway.proc.send_signal(signal.SIGTERM)
                async with local_http.async_client() as http:
                    with anyio.fail_after(5):
                        while True:  # during the drain window the replica still answers, with 503 on /ready
                            response = await http.get(gateway.base + "/ready")
                            ready_codes.append(response.status_code)
                            if response.status_code == 503:
                                assert response.json() == {"ready": False}
                                break
                            await anyio.sleep(0.05)
                    # Still serving during the drain: /health answers.
                    assert (await http.get(gateway.base + "/health")).status_code == 200
        result = outcome["result"]
        assert not result.is_error, result  # type: ignore[attr-defined]
        assert result.content[0].text == "slept 3.0"  # type: ignore[attr-defined]
        code = await anyio.to_thread.run_sync(lambda: gateway.proc.wait(timeout=30))
        assert code == 0, gateway.stop()
        assert ready_codes[-1] == 503
        assert _wait_gone(backend_pid), f"backend {backend_pid} outlived the gateway"
        log = gateway.stop()
        assert "draining" in log and "backends closed" in log
    finally:
        gateway.stop()


def test_sigterm_on_idle_replica_exits_quickly(tmp_path: Path) -> None:
    """With nothing in flight the replica does not wait out `shutdown_timeout` (here far longer than the
    generous bound on the wait): it stops listening, closes its backends and exits 0."""
    config = write_config(
        tmp_path, {"local": stdio_echo_server()}, gateway={"drain_seconds": 0, "shutdown_timeout": 3600}
    )
    gateway = GatewayProcess(config, MCP_GATEWAY_LOG_LEVEL="INFO")
    try:
        gateway.proc.send_signal(signal.SIGTERM)
        assert gateway.proc.wait(timeout=300) == 0
        log = gateway.stop()
        assert "stopped listening; 0 tool call(s) in flight" in log and "backends closed" in log, log
        assert "still in flight" not in log, log
        # After exit nothing listens any more.
        try:
            local_http.get(gateway.base + "/ready", timeout=1)
            raise AssertionError("still listening")
        except httpx.ConnectError:
            pass
    finally:
        gateway.stop()


async def test_sigterm_on_stdio_gateway_finishes_the_call_and_exits_0(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    transport = StdioTransport(
        sys.executable,
        ["-m", "gateway", "serve", "--config", str(config)],
        env=child_env(),
        cwd=str(ROOT),
        keep_alive=False,
    )
    async with Client(transport) as client:
        backend_pid = (await client.call_tool("local_whoami", {})).structured_content["pid"]  # type: ignore[index]
        gateway_pid = _gateway_pid(backend_pid)
        outcome: dict[str, object] = {}

        async def slow_call() -> None:
            outcome["result"] = await client.call_tool("local_sleep", {"seconds": 2}, raise_on_error=False)

        async with anyio.create_task_group() as group:
            group.start_soon(slow_call)
            await anyio.sleep(0.5)
            os.kill(gateway_pid, signal.SIGTERM)
        result = outcome["result"]
        assert not result.is_error and result.content[0].text == "slept 2.0"  # type: ignore[attr-defined]
    assert _wait_gone(gateway_pid)
    assert _wait_gone(backend_pid)


def _gateway_pid(backend_pid: int) -> int:
    """The gateway is the backend's parent process."""
    stat = Path(f"/proc/{backend_pid}/stat").read_text()
    return int(stat.split(")")[-1].split()[1])


def _exit_code_of_stdio_gateway(config: Path) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    proc.stdin.write((json.dumps(initialize) + "\n").encode())
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1  # serving
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_stdio_exit_code(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    assert _exit_code_of_stdio_gateway(config) == 0
