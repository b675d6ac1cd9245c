"""The `mcp-gateway` commands: check, tools, call; and a built-in server mounted in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.procs import ROOT, child_env, stdio_echo_server, write_config


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = child_env()
    for name in ("SLACK_BOT_TOKEN", "SLACK_USER_TOKEN"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(
        tmp_path_factory.mktemp("cli"),
        {
            "local": stdio_echo_server(),
            "slack": {"command": "python", "args": ["-m", "servers.slack"], "inProcess": True},
        },
    )


def test_check_prints_a_table_and_exits_0_when_all_are_up(config: Path) -> None:
    done = run("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert rows["local"][1:4] == ["stdio", "up", "6"]
    assert rows["slack"][1:4] == ["in-process", "up", "9"]


def test_check_exits_1_when_a_backend_is_down(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"gone": {"command": sys.executable, "args": ["-c", "raise SystemExit(4)"]}})
    done = run("check", "--config", str(config))
    assert done.returncode == 1
    assert "gone" in done.stdout and "down" in done.stdout


def test_tools_lists_every_exposed_tool(config: Path) -> None:
    done = run("tools", "--config", str(config))
    assert done.returncode == 0
    names = {line.split("\t")[0] for line in done.stdout.splitlines()}
    assert {"local_echo", "local_add", "slack_post_message", "slack_search_messages"} <= names


def test_call_prints_the_result(config: Path) -> None:
    done = run("call", "local_add", "--args", '{"a": 2, "b": 3}', "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"


def test_call_exits_non_zero_on_a_tool_error(config: Path) -> None:
    done = run("call", "slack_list_channels", "--config", str(config))
    assert done.returncode == 1
    assert "SLACK_BOT_TOKEN" in done.stdout


def test_call_with_bad_args_json(config: Path) -> None:
    done = run("call", "local_add", "--args", "{not json", "--config", str(config))
    assert done.returncode == 2
    assert "--args is not valid JSON" in done.stderr
