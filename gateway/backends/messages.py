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
        return not value.isascii() and _unencodable(value)
    if isinstance(value, dict):  # the common case first: an object of ASCII strings (JSON keys are strings)
        for key, item in value.items():
            if not (isinstance(item, str) and item.isascii() and isinstance(key, str) and key.isascii()):
                break
        else:
            return False
    pending = [value]  # a walk without recursion: tool arguments are checked on every call
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and _unencodable(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
