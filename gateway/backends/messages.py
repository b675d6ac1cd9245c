"""The MCP message shapes the gateway itself builds or cleans: a tool error result, and the reserved
`_meta` keys that each hop stamps for itself."""

from __future__ import annotations

from typing import Any

RESERVED_META = "io.modelcontextprotocol/"  # the era envelope: each hop stamps its own


def tool_error(message: str) -> dict[str, Any]:
    """A `CallToolResult` that reports a failure to the model rather than to the protocol layer."""
    return {"content": [{"type": "text", "text": message}], "isError": True}


def strip_reserved(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop the backend hop's reserved `_meta` keys (each hop stamps its own)."""
    if not params or not isinstance(meta := params.get("_meta"), dict):
        return params
    cleaned = {key: value for key, value in meta.items() if not key.startswith(RESERVED_META)}
    params = dict(params)
    if cleaned:
        params["_meta"] = cleaned
    else:
        del params["_meta"]
    return params
