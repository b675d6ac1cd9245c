"""A backend that dies, one that never starts, and what /health and /ready say about them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config


@pytest.fixture
def fragile_gateway(tmp_path: Path, remote_backend: str) -> GatewayProcess:
    config = write_config(
        tmp_path,
        {"local": stdio_echo_server(), "remote": {"url": remote_backend}},
        gateway={"restart_backoff_initial": 1.0},
    )
    process = GatewayProcess(config)
    yield process  # type: ignore[misc]
    process.stop()


async def test_killed_backend_restarts_while_others_keep_answering(fragile_gateway: GatewayProcess) -> None:
    health = fragile_gateway.health()
    assert health["status"] == "ok"
    assert health["backends"]["local"] == {
        "state": "up",
        "transport": "stdio",
        "tools": 8,
        "last_error": None,
        "restarts": 0,
        "reasons": [],  # what the backend publishes about itself (statusTool): the echo backend publishes nothing
    }
    remote_failures: list[str] = []
    remote_calls = 0
    stop_remote = anyio.Event()

    async with Client(StreamableHttpTransport(fragile_gateway.base + "/mcp")) as client:
        first_pid = (await client.call_tool("local_whoami", {})).structured_content["pid"]  # type: ignore[index]

        async def keep_calling_remote() -> None:
            nonlocal remote_calls
            while not stop_remote.is_set():
                result = await client.call_tool("remote_echo", {"text": "still here"}, raise_on_error=False)
                remote_calls += 1
                if result.is_error or result.content[0].text != "still here":
                    remote_failures.append(str(result.content))
                await anyio.sleep(0.01)

        in_flight: dict[str, object] = {}

        async def slow_local_call() -> None:
            in_flight["result"] = await client.call_tool("local_sleep", {"seconds": 20}, raise_on_error=False)

        async with anyio.create_task_group() as group:
            group.start_soon(keep_calling_remote)
            group.start_soon(slow_local_call)
            await anyio.sleep(0.3)
            crash = await client.call_tool("local_crash", {}, raise_on_error=False)
            assert crash.is_error and "local" in crash.content[0].text
            with anyio.fail_after(10):
                while "result" not in in_flight:
                    await anyio.sleep(0.05)
            down = await anyio.to_thread.run_sync(
                fragile_gateway.wait_for, lambda h: h["backends"]["local"]["state"] != "up"
            )
            assert down["status"] == "degraded"
            async with local_http.async_client() as http:  # the remote backend still serves
                assert (await http.get(fragile_gateway.base + "/ready")).status_code == 200
            await anyio.to_thread.run_sync(fragile_gateway.wait_for, lambda h: h["backends"]["local"]["state"] == "up")
            after = await client.call_tool("local_whoami", {})
            stop_remote.set()

    interrupted = in_flight["result"]
    assert interrupted.is_error  # type: ignore[attr-defined]
    assert "local" in interrupted.content[0].text  # type: ignore[attr-defined]
    assert after.structured_content["pid"] != first_pid  # type: ignore[index]
    assert remote_calls > 0 and remote_failures == []
    health = fragile_gateway.health()
    assert health["status"] == "ok" and health["backends"]["local"]["restarts"] >= 1


def test_gateway_starts_with_a_backend_that_cannot(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "broken": {"command": sys.executable, "args": ["-c", "import sys; sys.exit(7)"]},
            "local": stdio_echo_server(),
        },
    )
    process = GatewayProcess(config)
    try:
        health = process.wait_for(lambda h: h["backends"]["broken"]["state"] != "starting")
        assert health["status"] == "degraded"
        assert health["backends"]["broken"]["state"] == "down"
        assert health["backends"]["broken"]["last_error"]
        assert health["backends"]["local"]["state"] == "up"
        assert local_http.get(process.base + "/ready").status_code == 200
    finally:
        process.stop()


def test_not_ready_when_no_backend_is_up(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "broken": {"command": sys.executable, "args": ["-c", "import sys; sys.exit(7)"]},
        },
    )
    process = GatewayProcess(config, wait_path="/health")  # /ready stays 503 here
    try:
        process.wait_for(lambda h: h["backends"]["broken"]["state"] == "down")
        ready = local_http.get(process.base + "/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False}
    finally:
        process.stop()


async def test_stdio_backend_has_its_own_process_group_in_the_gateways_session(tmp_path: Path) -> None:
    """Its own group, so stopping it ends whatever it started, and a signal to the gateway's group misses it;
    the gateway's session, not one of its own, which the kernel would schedule as a group apart (autogroup)."""
    gateway = GatewayProcess(write_config(tmp_path, {"local": stdio_echo_server()}))
    try:
        async with Client(StreamableHttpTransport(gateway.base + "/mcp")) as client:
            pid = (await client.call_tool("local_whoami", {})).structured_content["pid"]  # type: ignore[index]
        assert os.getpgid(pid) == pid != os.getpgid(gateway.proc.pid)
        assert os.getsid(pid) == os.getsid(gateway.proc.pid)
    finally:
        gateway.stop()
