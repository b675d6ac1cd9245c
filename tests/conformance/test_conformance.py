"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, server mode) and the MCP Inspector
CLI against the gateway, with the conformance fixture backend (`tests/backends/conformance.py`) behind it,
exposed unprefixed (`"namespace": ""`).

The backend runs over stdio in both protocol eras (2026-07-28, where sampling and elicitation are
`input_required` rounds, and the handshake era, where they are server-to-client requests) and over Streamable
HTTP. The Node tools come from `npm ci` at the repository root (`package.json` pins them), or from
`/tmp/conf/node_modules` or PATH; without them (or without Node >= 22) the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.procs import ROOT, GatewayProcess, module_over_http, write_config

EXPECTED_FAILURES = Path(__file__).with_name("expected-failures.yml")
NODE_BIN_DIRS = [ROOT / "node_modules" / ".bin", Path("/tmp/conf/node_modules/.bin")]
MIN_NODE = 22


def _node_major(node: str) -> int | None:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v(\d+)\.", out.strip())
    return int(match.group(1)) if match else None


def _find_tools() -> tuple[dict[str, str], str, str] | str:
    """(env with a Node >= 22 first on PATH, conformance, inspector CLI), or why they cannot be used."""
    path_dirs = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    problems = []
    for directory in [*NODE_BIN_DIRS, *path_dirs]:
        conformance, inspector = directory / "conformance", directory / "mcp-inspector-cli"
        if not (conformance.exists() and inspector.exists()):
            continue
        node = directory / "node" if (directory / "node").exists() else shutil.which("node")
        major = _node_major(str(node)) if node else None
        if major is None or major < MIN_NODE:
            problems.append(f"{directory}: Node {major or 'missing'} < {MIN_NODE}")
            continue
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(directory), str(Path(str(node)).parent), env.get("PATH", "")])
        return env, str(conformance), str(inspector)
    where = ", ".join(str(d) for d in NODE_BIN_DIRS)
    return "; ".join(problems) or (
        f"@modelcontextprotocol/conformance and @modelcontextprotocol/inspector not installed "
        f"(run `npm ci` at the repository root; looked in {where} and PATH)"
    )


TOOLS = _find_tools()
pytestmark = pytest.mark.skipif(isinstance(TOOLS, str), reason=TOOLS if isinstance(TOOLS, str) else "")


def _stdio_fixture(*args: str) -> dict[str, Any]:
    return {
        "command": "python",
        "args": ["-m", "tests.backends.conformance", *args],
        "namespace": "",
        "env": {"PYTHONPATH": str(ROOT)},
    }


@pytest.fixture(scope="module", params=["stdio", "stdio-handshake", "http"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp(f"conformance-{request.param}")
    with ExitStack() as stack:
        if request.param == "http":
            url = stack.enter_context(module_over_http("tests.backends.conformance", "--name", "conformance"))
            server = {"url": url, "namespace": ""}
        else:
            server = _stdio_fixture(*(["--legacy"] if request.param == "stdio-handshake" else []))
        process = GatewayProcess(write_config(directory, {"conformance": server}))
        try:
            process.wait_for(lambda health: health["backends"]["conformance"]["state"] == "up")
            yield process
        finally:
            process.stop()


def test_conformance_suite(gateway: GatewayProcess, tmp_path: Path) -> None:
    assert not isinstance(TOOLS, str)
    env, conformance, _ = TOOLS
    run = subprocess.run(
        [
            conformance,
            "server",
            "--url",
            gateway.base + "/mcp",
            "--expected-failures",
            str(EXPECTED_FAILURES),
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    summary = run.stdout[run.stdout.find("=== SUMMARY ===") :] if "=== SUMMARY ===" in run.stdout else run.stdout
    assert run.returncode == 0, f"conformance failed (exit {run.returncode}):\n{summary[-6000:]}\n{run.stderr[-2000:]}"
    total = re.search(r"Total: (\d+) passed, (\d+) failed", run.stdout)
    assert total is not None, summary
    assert int(total.group(1)) >= 30 and total.group(2) == "0", summary


def _inspector(gateway: GatewayProcess, *args: str) -> Any:
    assert not isinstance(TOOLS, str)
    env, _, inspector = TOOLS
    run = subprocess.run(
        [inspector, "--cli", gateway.base + "/mcp", "--transport", "http", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads(run.stdout)


def test_inspector_cli(gateway: GatewayProcess) -> None:
    tools = _inspector(gateway, "--method", "tools/list")["tools"]
    assert {"test_simple_text", "test_sampling", "json_schema_2020_12_tool"} <= {tool["name"] for tool in tools}
    result = _inspector(gateway, "--method", "tools/call", "--tool-name", "test_simple_text")
    assert result["content"] == [{"type": "text", "text": "This is a simple text response for testing."}]
    assert not result.get("isError")
    error = _inspector(gateway, "--method", "tools/call", "--tool-name", "test_error_handling")
    assert error["isError"] is True
    prompt = _inspector(
        gateway,
        "--method",
        "prompts/get",
        "--prompt-name",
        "test_prompt_with_arguments",
        "--prompt-args",
        "arg1=a",
        "arg2=b",
    )
    assert prompt["messages"][0]["content"]["text"] == "Prompt with arguments: arg1='a', arg2='b'"
    templates = _inspector(gateway, "--method", "resources/templates/list")["resourceTemplates"]
    assert [t["uriTemplate"] for t in templates] == ["test://template/{id}/data"]
