"""The MCP message shapes the gateway itself builds or cleans: a tool error result, and the reserved
`_meta` keys that each hop stamps for itself."""

from __future__ import annotations

from typing import Any

RESERVED_META = "io.modelcontextprotocol/"  # the era envelope: each hop stamps its own
FRAMEWORK_META = "fastmcp"  # FastMCP's internal result `_meta` (e.g. `wrap_result`): never for clients


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


def invalid_unicode(value: Any) -> bool:
    """Whether a JSON value holds a string that is not valid Unicode (a lone surrogate such as `"\\ud800"`,
    which JSON's escapes can carry but no backend can encode back)."""
    if isinstance(value, str):
        if value.isascii():
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(invalid_unicode(key) or invalid_unicode(item) for key, item in value.items())
    if isinstance(value, list):
        return any(invalid_unicode(item) for item in value)
    return False
