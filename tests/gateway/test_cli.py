"""The `mcp-gateway` commands: check, tools, call (through a running gateway, or starting only the backends they
need); and a built-in server mounted in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.procs import ROOT, GatewayProcess, child_env, stdio_echo_server, write_config

NOWHERE = "http://127.0.0.1:1/mcp"  # nothing listens on port 1: the commands start their own backends


def run(*args: str) -> subprocess.CompletedProcess[str]:
    if args[0] in ("tools", "call") and "--url" not in args:
        args = (*args, "--url", NOWHERE)  # not whatever gateway may be serving on this machine's port 8080
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
    assert rows["local"][1:4] == ["stdio", "up", "8"]
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


def test_check_shows_the_last_stderr_line_of_a_backend_that_died_at_start(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "local": stdio_echo_server(),
            "notion": {"command": "python", "args": ["-m", "servers.notion"]},
        },
    )
    done = run("check", "--config", str(config))
    assert done.returncode == 1
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert rows["local"].split()[1:3] == ["stdio", "up"]
    assert "down" in rows["notion"] and "No module named servers.notion" in rows["notion"]


def test_check_names_the_url_of_an_unreachable_backend(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"remote": {"url": "http://127.0.0.1:1/mcp"}}, {"startup_timeout": 5})
    done = run("check", "--config", str(config))
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith("remote"))
    assert "down" in row and "http://127.0.0.1:1/mcp" in row


def test_call_starts_only_the_backend_that_has_the_tool(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    config = write_config(
        tmp_path,
        {
            "local": stdio_echo_server(),
            "other": {"command": sys.executable, "args": ["-c", f"open({str(marker)!r}, 'w')"]},
        },
    )
    done = run("call", "local_add", "--args", '{"a": 2, "b": 3}', "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    assert not marker.exists()


def test_tools_and_call_use_a_running_gateway_at_url(config: Path, tmp_path: Path) -> None:
    gateway = GatewayProcess(config)
    try:
        missing = str(tmp_path / "no-such-config.json")  # the commands never read it: the gateway answers
        listed = run("tools", "--url", gateway.base + "/mcp", "--config", missing)
        called = run(
            "call", "local_add", "--args", '{"a": 4, "b": 5}', "--url", gateway.base + "/mcp", "--config", missing
        )
    finally:
        gateway.stop()
    assert listed.returncode == 0, listed.stderr
    assert {"local_echo", "slack_post_message"} <= {line.split("\t")[0] for line in listed.stdout.splitlines()}
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip() == "9"


def _probe(code: str, *argv: str) -> str:
    """Run `code` in a fresh interpreter (nothing imported yet); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_stdio_children_start_before_the_mcp_stack_is_imported_and_their_backends_adopt_them(
    config: Path,
) -> None:
    """So the child's imports and the gateway's run on two cores at once: the child is spawned with nothing of
    the MCP SDK or FastMCP imported, and the backend's session runs over that child (no second one)."""
    code = """
import os, sys, anyio
from gateway.cli import running_hub, spawn_children
from gateway.config.loader import load_config
from gateway.ops.logs import BackendStderr

def children():
    pid = os.getpid()
    return sorted(int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split())

async def main():
    config = load_config(sys.argv[1], {})
    stderr = BackendStderr()
    spawned = await spawn_children(config, stderr)
    stack = sorted(name for name in ("mcp", "fastmcp", "httpx") if name in sys.modules)
    async with running_hub(config, stderr, spawned=spawned) as hub:
        local = hub.by_name["local"]
        result = await hub.call_tool("local_add", {"a": 1, "b": 2})
        print(sorted(spawned), stack, local.state, children() == [spawned["local"].pid], result["content"][0]["text"])

anyio.run(main)
"""
    assert _probe(code, str(config)) == "['local'] [] up True 3"


def test_tools_and_call_without_a_gateway_import_no_http_client_to_find_out() -> None:
    """Nothing listens at --url: the commands know it before importing an HTTP client (it would come before
    the children are spawned)."""
    code = f"""
import sys, anyio
from gateway.cli import _from_running
print(anyio.run(_from_running, "tools", {NOWHERE!r}, None, {{}}), "httpx" in sys.modules)
"""
    assert _probe(code) == "None False"


def test_the_local_commands_load_their_security_settings_without_the_serving_stack() -> None:
    """`check`, `tools` and `call` use `load_security` of gateway.serve; the transports (FastMCP's server,
    uvicorn, Starlette) and the hub load only in `serve`."""
    code = """
import sys
from gateway.config.loader import load_config
from gateway.serve import load_security
load_security(load_config(sys.argv[1], {}), sys.argv[1], {})
print(sorted(m for m in ("mcp", "fastmcp", "uvicorn", "starlette", "gateway.routing.hub") if m in sys.modules))
"""
    assert _probe(code, str(ROOT / "config" / "mcp.json")) == "[]"


def test_the_local_commands_and_the_built_in_servers_leave_their_heap_to_exit_not_to_a_last_collection(
    config: Path,
) -> None:
    """At shutdown the interpreter walks every object in a full collection (most of a second for ai_memory's
    heap, while the gateway waits for the child to exit): both freeze their objects once done, so it skips them."""
    code = """
import atexit, gc, sys
atexit.register(lambda: print("frozen" if gc.get_freeze_count() else "not frozen"))
if sys.argv[1] == "server":
    from servers.runner import run_server
    from servers.slack.server import create_server
    run_server(create_server, [])
else:
    from gateway.cli import main
    main(["tools", "--url", sys.argv[2], "--config", sys.argv[1]])
"""
    for argv in (["server"], [str(config), NOWHERE]):
        done = subprocess.run(
            [sys.executable, "-c", code, *argv],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,  # the server reads EOF at once and returns
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "frozen", (argv, done.stdout, done.stderr)
