"""A raw stdio MCP backend (no SDK) that handshakes properly and then answers tool calls with garbage:
`bad_result` (a result that is no CallToolResult), `internal_error` (JSON-RPC -32603), `not_json` (a line
that is not JSON, and no answer), `ok` (a proper result).

Run as `python -m tests.backends.garbage`.
"""

from __future__ import annotations

import json
import sys

from tests.backends import started

TOOLS = [
    {"name": name, "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}}
    for name in ("bad_result", "internal_error", "not_json", "ok")
]


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    started()
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "id" not in message or "method" not in message:
            continue
        request_id, method, params = message["id"], message["method"], message.get("params") or {}
        if method == "initialize":
            send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "result": {
                        "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "garbage", "version": "0"},
                    },
                }
            )
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        elif method == "tools/call":
            name = params.get("name")
            if name == "bad_result":
                send({"jsonrpc": "2.0", "id": request_id, "result": {"content": "this is not a list"}})
            elif name == "internal_error":
                send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32603, "message": "kaboom"}})
            elif name == "not_json":
                sys.stdout.write("}}} this is not JSON {{{\n")
                sys.stdout.flush()
            else:
                send(
                    {
                        "jsonrpc": "2.0",
                        "id": request_id,
                        "result": {"content": [{"type": "text", "text": "fine"}], "isError": False},
                    }
                )
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"no {method}"}})


if __name__ == "__main__":
    main()
