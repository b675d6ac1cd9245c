"""Operator errors in one line (issue 16, point 7): a port in use or invalid is one line naming the address
and the problem, exit 2, before any backend starts."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.procs import ROOT, child_env, write_config


def serve(tmp_path: Path, port: str, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    marker = tmp_path / "backend-started"
    backend = {"command": "python", "args": ["-c", f"open({str(marker)!r}, 'w')"]}
    config = write_config(tmp_path, {"marker": backend})
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--transport", "http", "--port", port],
        cwd=ROOT,
        env=child_env(MCP_GATEWAY_LOG_LEVEL="INFO", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return run, marker


def test_port_in_use_is_one_line_and_exit_2_before_any_backend(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run, marker = serve(tmp_path, str(port))
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == f"mcp-gateway: cannot serve on http://127.0.0.1:{port}: the address is already in use"
    assert not marker.exists()


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_invalid_port_is_one_line_and_exit_2(tmp_path: Path, port: str) -> None:
    run, marker = serve(tmp_path, port)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines == [f"mcp-gateway: cannot serve on http://127.0.0.1:{port}: the port must be between 1 and 65535"]
    assert not marker.exists()


def test_in_json_log_mode_the_one_line_is_a_json_record(tmp_path: Path) -> None:
    """With `MCP_GATEWAY_LOG_FORMAT=json` every line on stderr is a JSON record, the operator's error too (it
    was plain text in the middle of JSON records); a bad config file is refused the same way."""
    run, marker = serve(tmp_path, "99999", MCP_GATEWAY_LOG_FORMAT="json")
    assert run.returncode == 2, run.stderr
    [line] = run.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["logger"] == "mcp_gateway.cli"
    assert record["message"] == "cannot serve on http://127.0.0.1:99999: the port must be between 1 and 65535"
    assert not marker.exists()
    broken = tmp_path / "broken.json"
    broken.write_text('{"mcpServers": {"x": {"command": 3}}}')
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(broken)],
        cwd=ROOT,
        env=child_env(MCP_GATEWAY_LOG_FORMAT="json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    [line] = refused.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["message"].startswith(f"config error: {broken}: ")
