"""Over stdio the gateway has one client, and its backends speak that client's protocol era
(`gateway.backends.era`): a handshake-era client's calls reach a handshake session of the backend, a
2026-07-28 client's the per-request era; the era is the client's first request's, and a backend that does
not speak it still gets the one it speaks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.procs import children
from gateway.backends.era import ClientEra
from tests.gateway.transports.test_stdio_front import ENVELOPE, handshake, serve
from tests.helpers.procs import ROOT, child_env, stdio_echo_server, write_config

HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"


def _line(request_id: int, method: str, params: dict) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def _protocol_call(request_id: int, modern: bool, tool: str = "local_protocol") -> str:
    params: dict = {"name": tool, "arguments": {}}
    if modern:
        params["_meta"] = ENVELOPE
    return _line(request_id, "tools/call", params)


def _texts(answers: list[dict]) -> dict[int, str]:
    return {a["id"]: a["result"]["content"][0]["text"] for a in answers if a.get("id") and "result" in a}


@pytest.mark.parametrize("modern", [False, True], ids=["handshake client", "2026-07-28 client"])
def test_the_backend_speaks_the_stdio_clients_era(tmp_path: Path, modern: bool) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    lines = [] if modern else handshake()
    answers = serve(config, [*lines, _protocol_call(1, modern), _protocol_call(2, modern)])
    assert _texts(answers) == {1: MODERN if modern else HANDSHAKE, 2: MODERN if modern else HANDSHAKE}


@pytest.mark.parametrize(
    "declared",
    [{}, {"elicitation": {}}, {"sampling": {"tools": {}}, "roots": {"listChanged": True}}],
    ids=["none", "elicitation", "sampling and roots"],
)
def test_the_backend_is_told_what_a_handshake_client_declared(tmp_path: Path, declared: dict) -> None:
    """The backend's handshake declares the stdio client's capabilities, not the gateway's own (all three): a
    backend sees whether it may ask the client, as it would connected to the client directly."""
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    answers = serve(config, [*handshake(declared), _protocol_call(1, False, "local_capabilities")])
    [answer] = [a for a in answers if a.get("id") == 1]
    assert answer["result"]["structuredContent"]["result"] == sorted(declared)


def test_a_modern_client_s_backend_sees_what_the_gateway_can_relay(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    [answer] = serve(config, [_protocol_call(1, True, "local_capabilities")])
    assert answer["result"]["structuredContent"]["result"] == ["elicitation", "roots", "sampling"]


def test_a_handshake_only_backend_is_still_reached_by_a_modern_client(tmp_path: Path) -> None:
    """A backend that refuses 2026-07-28 (the conformance fixture's `--legacy`) gets the handshake, whatever
    the client's era; the gateway answers the modern client in its own era."""
    legacy = {"command": "python", "args": ["-m", "tests.backends.conformance", "--legacy"], "namespace": ""}
    config = write_config(tmp_path, {"conformance": {**legacy, "env": {"PYTHONPATH": str(ROOT)}}})
    params = {"name": "test_simple_text", "arguments": {}, "_meta": ENVELOPE}
    [answer] = serve(config, [_line(1, "tools/call", params)])
    assert answer["result"]["resultType"] == "complete"
    assert answer["result"]["content"][0]["type"] == "text"


def test_a_backend_that_refuses_the_handshake_is_reached_by_a_handshake_client(tmp_path: Path) -> None:
    modern_only = stdio_echo_server()
    modern_only["args"] = [*modern_only["args"], "--modern-only"]
    config = write_config(tmp_path, {"local": modern_only})
    answers = serve(config, [*handshake(), _protocol_call(1, modern=False)])
    assert _texts(answers) == {1: MODERN}


def test_the_first_request_that_names_an_era_decides_it_and_it_stays() -> None:
    era = ClientEra()
    era.observe("ping", modern_envelope=False)  # says nothing of the era
    era.observe("notifications/initialized", modern_envelope=False)
    assert not era.decided
    era.observe("initialize", modern_envelope=True)  # the handshake, even with an envelope stamped on it
    assert era.modern is False
    era.observe("tools/call", modern_envelope=True)  # a connection's era does not change
    assert era.modern is False
    discover = ClientEra()
    discover.observe("server/discover", modern_envelope=False)
    assert discover.modern is True


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_client_that_leaves_before_any_request_leaves_no_backend_running(tmp_path: Path) -> None:
    """The backend's child is started at once but spoken to only once the client has said its era: a client
    that closes stdin before any request still leaves no child behind when the gateway exits."""
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=child_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not (kids := children(gateway.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kids, "the backend's child never started"
        time.sleep(1)  # the child is importing its server; nothing is asked of it
        assert gateway.stdin is not None
        gateway.stdin.close()
        assert gateway.wait(60) == 0
        assert [pid for pid in kids if _running(pid)] == []
    finally:
        gateway.kill()
