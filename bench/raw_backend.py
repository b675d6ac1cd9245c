"""A stdio MCP backend with no framework: the `echo` tool of `bench.backend`, answered by a loop of
`json.loads` / `json.dumps` over stdin and stdout (`python -m bench.raw_backend`).

It costs 20-40 µs of CPU per call where FastMCP's costs 1.5-3 ms, so behind the gateway it keeps up with the
load and the gateway stays busy: the figure of the gateway in front of it is what forwarding costs the gateway
itself. Behind FastMCP's backend, the slower one, the gateway idles between calls and each of its two wake-ups
per call (the request, the backend's answer) starts on a core the other processes have used meanwhile
(docs/benchmarks.md, "What an idle process pays on this machine").

It speaks what the gateway asks of a stdio backend: `initialize` (in the protocol version asked for),
`tools/list`, `tools/call`, `ping`, empty prompt and resource lists; anything else is "Method not found",
so the gateway's era negotiation falls back to the handshake it understands.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TOOL = {
    "name": "echo",
    "description": "Return the text unchanged.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "annotations": {"readOnlyHint": True},
}
EMPTY = {"prompts/list": {"prompts": []}, "resources/list": {"resources": []}, "ping": {}}
EMPTY["resources/templates/list"] = {"resourceTemplates": []}


def answer(message: dict[str, Any]) -> dict[str, Any] | None:
    """The response to one message (None for a notification or a response)."""
    if "id" not in message or not isinstance(message.get("method"), str):
        return None
    method, params = message["method"], message.get("params") or {}
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        reply["result"] = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-raw", "version": "0"},
        }
    elif method == "tools/list":
        reply["result"] = {"tools": [TOOL]}
    elif method == "tools/call" and params.get("name") == "echo":
        text = str((params.get("arguments") or {}).get("text", ""))
        reply["result"] = {"content": [{"type": "text", "text": text}], "isError": False}
    elif method in EMPTY:
        reply["result"] = EMPTY[method]
    else:
        reply["error"] = {"code": -32601, "message": f"Method not found: {method}"}
    return reply


def main() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        reply = answer(message) if isinstance(message, dict) else None
        if reply is not None:
            out.write(json.dumps(reply).encode() + b"\n")
            out.flush()


if __name__ == "__main__":
    main()
