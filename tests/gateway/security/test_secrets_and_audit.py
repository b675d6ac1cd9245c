"""Secrets never reach a client or the log; one audit line per tool call; `/health` and `check` stay clean."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.gateway.security.conftest import (
    ALICE,
    BOB,
    PLANTED,
    audit_lines,
    client,
    clients,
    rpc,
    secured_config,
)
from tests.helpers.procs import ROOT, GatewayProcess, child_env


async def test_planted_secret_reaches_neither_client_nor_log(tmp_path: Path) -> None:
    gateway = GatewayProcess(secured_config(tmp_path), ECHO_API_TOKEN=PLANTED, MCP_GATEWAY_LOG_LEVEL="DEBUG")
    try:
        fast = rpc(gateway, "tools/call", {"name": "leaky_leak", "arguments": {}}, token=BOB)
        text = fast.json()["result"]["content"][0]["text"]
        assert fast.json()["result"]["isError"] is True
        assert "upstream rejected credential [REDACTED]" in text
        assert PLANTED not in fast.text
        async with client(gateway, BOB, "sse", "legacy") as session:
            slow = await session.call_tool("leaky_leak", {}, raise_on_error=False)
            assert slow.is_error and PLANTED not in slow.content[0].text
            assert "[REDACTED]" in slow.content[0].text
        assert PLANTED not in json.dumps(gateway.health())
    finally:
        log = gateway.stop()
    # the backend's own stderr, scrubbed on its way through
    assert "leaky backend: calling upstream with Authorization: Bearer [REDACTED]" in log
    assert PLANTED not in log
    assert ALICE not in log and BOB not in log


def test_audit_line_per_call_without_arguments(secured: GatewayProcess) -> None:
    before = len(audit_lines(secured.stderr))
    rpc(secured, "tools/call", {"name": "local_echo", "arguments": {"text": "private words"}}, token=ALICE)
    rpc(secured, "tools/call", {"name": "local_add", "arguments": {"a": 1, "b": 2}}, token=ALICE)
    rpc(secured, "tools/call", {"name": "leaky_leak", "arguments": {}}, token=BOB)
    deadline_lines: list[dict] = []
    for _ in range(50):
        deadline_lines = audit_lines(secured.stderr)[before:]
        if len(deadline_lines) >= 3:
            break
        import time

        time.sleep(0.1)
    lines = deadline_lines
    assert [(line["client"], line["tool"], line["outcome"]) for line in lines] == [
        ("alice", "local_echo", "ok"),
        ("alice", "local_add", "denied"),
        ("bob", "leaky_leak", "error"),
    ]
    for line in lines:
        assert set(line) == {"ts", "client", "tool", "outcome", "ms"}
        assert line["ms"] >= 0
    assert "private words" not in secured.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_audit_to_a_file_with_redacted_arguments_none_lost_at_stop(tmp_path: Path, stop: signal.Signals) -> None:
    """Every call's line is in the audit file, arguments redacted, however soon after the calls the gateway
    is stopped: a burst of calls, two still in flight when the signal comes."""
    audit_file = tmp_path / "audit.jsonl"
    config = secured_config(tmp_path, {"clients": clients()})
    document = json.loads(config.read_text())
    document["gateway"]["audit"] = {"file": str(audit_file), "arguments": True}
    config.write_text(json.dumps(document))
    gateway = GatewayProcess(config, ECHO_API_TOKEN=PLANTED)
    calls = [("local_echo", {"text": f"key {PLANTED} {n}"}) for n in range(20)]
    calls += [("local_sleep", {"seconds": 1.5})] * 2
    try:
        with ThreadPoolExecutor(len(calls)) as pool:
            slow = [pool.submit(rpc, gateway, "tools/call", {"name": n, "arguments": a}, token=ALICE) for n, a in calls]
            for answered in slow[:20]:
                assert answered.result().status_code == 200
            gateway.proc.send_signal(stop)  # the sleeps are still running
            assert all(answered.result().json()["result"]["isError"] is False for answered in slow)
        assert gateway.proc.wait(timeout=60) == 0
    finally:
        log = gateway.stop()
    lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert sorted(line["tool"] for line in lines) == ["local_echo"] * 20 + ["local_sleep"] * 2, log
    echoed = sorted(line["arguments"]["text"] for line in lines if line["tool"] == "local_echo")
    assert echoed == sorted(f"key [REDACTED] {n}" for n in range(20))
    assert '"outcome"' not in log and "outcome=" not in log  # the file has them, stderr not


def test_check_does_not_print_secrets(tmp_path: Path) -> None:
    failing = {
        "command": sys.executable,
        "args": ["-c", f"import sys; sys.exit('boom {PLANTED}')"],
        "env": {"ECHO_API_TOKEN": "${ECHO_API_TOKEN}"},
    }
    config = secured_config(tmp_path, {"clients": clients()}, broken=failing)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(ECHO_API_TOKEN=PLANTED, MCP_GATEWAY_STARTUP_TIMEOUT="5"),
        timeout=60,
    )
    assert done.returncode == 1
    assert "broken" in done.stdout
    assert PLANTED not in done.stdout + done.stderr
