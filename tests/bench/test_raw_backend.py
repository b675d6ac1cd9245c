"""bench.raw_backend: the framework-free backend answers what the gateway asks of a stdio backend."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.raw_backend import answer


def test_initialize_answers_in_the_version_asked_for() -> None:
    reply = answer({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}})
    assert reply is not None
    assert reply["id"] == 1
    assert reply["result"]["protocolVersion"] == "2025-06-18"
    assert "tools" in reply["result"]["capabilities"]


def test_echo_and_unknown_methods_and_notifications() -> None:
    call = {
        "jsonrpc": "2.0",
        "id": "gw-7",
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hé"}},
    }
    reply = answer(call)
    assert reply is not None
    assert reply["result"]["content"] == [{"type": "text", "text": "hé"}]
    unknown = answer({"jsonrpc": "2.0", "id": 2, "method": "server/discover"})
    assert unknown is not None
    assert unknown["error"]["code"] == -32601
    assert answer({"jsonrpc": "2.0", "method": "notifications/initialized"}) is None
    assert answer({"jsonrpc": "2.0", "id": 3, "result": {}}) is None


def test_the_process_answers_line_by_line_and_skips_garbage() -> None:
    lines = [
        b"not json\n",
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode() + b"\n",
        json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}).encode() + b"\n",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "bench.raw_backend"], input=b"".join(lines), capture_output=True, timeout=60, check=True
    )
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in replies] == [1, 2]
    assert replies[0]["result"]["tools"][0]["name"] == "echo"
