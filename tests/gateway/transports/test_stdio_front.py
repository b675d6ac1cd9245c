"""The stdio front's reading: lines that arrive together (one write, one read) are each served, in order, and
answered before the gateway leaves at EOF (FastMCP's requests too: the last ones read used to be dropped);
a call cancelled in the same read as its request is taken off the books (EOF does not wait for it)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.procs import serve_stdio, stdio_echo_server, write_config

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def call(request_id: int, text: str) -> str:
    params = {"name": "local_echo", "arguments": {"text": text}, "_meta": ENVELOPE}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


def handshake(capabilities: dict | None = None) -> list[str]:
    """A handshake-era client's opening lines: `initialize` (id 0, declaring `capabilities`) and `initialized`."""
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities or {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
    return [json.dumps(initialize), '{"jsonrpc":"2.0","method":"notifications/initialized"}']


def serve(config: Path, lines: list[str]) -> list[dict]:
    """Everything the gateway answers to `lines` then EOF (the call timeout is longer than the wait: it must exit
    on its own)."""
    return serve_stdio(config, lines)


def test_a_call_cancelled_in_the_same_read_is_not_answered_and_eof_does_not_wait_for_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()}, {"call_timeout": 600})
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "reason": "test"}}
    answers = serve(config, [call(1, "cancelled"), json.dumps(cancel), call(2, "kept")])
    by_id = {answer.get("id"): answer for answer in answers}
    assert 1 not in by_id, by_id
    assert by_id[2]["result"]["content"][0]["text"] == "kept"


def test_many_lines_in_one_read_are_each_answered_fast_path_and_framework_alike(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    lines = handshake()
    for n in range(1, 101):  # FastMCP's pings (more than its queue holds: reading pauses and resumes) and calls
        lines.append(json.dumps({"jsonrpc": "2.0", "id": f"ping-{n}", "method": "ping"}))
        lines.append(call(n, f"call {n}"))
    answers = serve(config, lines)
    pings = [answer["id"] for answer in answers if str(answer.get("id")).startswith("ping-")]
    assert pings == [f"ping-{n}" for n in range(1, 101)]  # in the order they were read
    calls = {answer["id"]: answer for answer in answers if isinstance(answer.get("id"), int) and answer["id"] > 0}
    assert sorted(calls) == list(range(1, 101))
    assert all(calls[n]["result"]["content"][0]["text"] == f"call {n}" for n in calls)


def test_a_handshake_call_sent_before_the_backend_is_up_waits_for_it(tmp_path: Path) -> None:
    """A handshake-era client that writes its calls right behind `initialize` (before its answer, so they go to
    the FastMCP front, not the fast path) while the backend is still starting: the calls wait for the tool, as
    fast-path calls do, instead of being answered 'Unknown tool'."""
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    lines = handshake()
    for n in (1, 2):
        params = {"name": "local_echo", "arguments": {"text": f"early {n}"}}
        lines.append(json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params}))
    answers = {answer.get("id"): answer for answer in serve(config, lines)}
    assert [answers[n]["result"]["content"][0]["text"] for n in (1, 2)] == ["early 1", "early 2"], answers
