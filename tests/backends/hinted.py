"""A raw stdio MCP backend (no SDK: the SDK's models drop fields a CallToolResult does not declare) whose
read-only `read` tool puts its own 2026-07-28 cache hints on the result: `ttlMs` and `cacheScope` as the
call's `ttl_ms` and `scope` arguments ask (left out when not given). Its text is `<key>#<n>`, n counting
every call, so a test sees which answers came from the backend.

Run as `python -m tests.backends.hinted`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.backends import started

READ = {
    "name": "read",
    "description": "Read a key; the result carries the cache hints the arguments ask for.",
    "inputSchema": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "ttl_ms": {"type": "integer"},
            "scope": {"type": "string", "enum": ["public", "private"]},
        },
        "required": ["key"],
    },
    "annotations": {"readOnlyHint": True},
}


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    started()
    calls = 0
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "id" not in message or "method" not in message:
            continue
        request_id, method, params = message["id"], message["method"], message.get("params") or {}
        result: dict[str, Any]
        if method == "initialize":
            result = {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "hinted", "version": "0"},
            }
        elif method == "tools/list":
            result = {"tools": [READ]}
        elif method == "ping":
            result = {}
        elif method == "tools/call" and params.get("name") == "read":
            calls += 1
            arguments = params.get("arguments") or {}
            result = {"content": [{"type": "text", "text": f"{arguments.get('key')}#{calls}"}], "isError": False}
            if "ttl_ms" in arguments:
                result["ttlMs"] = arguments["ttl_ms"]
            if "scope" in arguments:
                result["cacheScope"] = arguments["scope"]
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"no {method}"}})
            continue
        send({"jsonrpc": "2.0", "id": request_id, "result": result})


if __name__ == "__main__":
    main()
