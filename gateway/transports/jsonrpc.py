"""One JSON-RPC message off the wire, checked before any transport code looks inside it.

Every transport decodes what a client sent here: invalid JSON or UTF-8 is a parse error, nesting deeper than
`MAX_DEPTH` and envelope fields of the wrong type (an `id` that is not a string or integer, a `method` that is
not a string, `params` or `_meta` that are not objects, a cancelled `requestId` that is not a string or
integer) are invalid requests. Whatever passes is safe to hash, compare and route; the deeper checks (which
methods exist, which params each takes) stay with the MCP SDK behind FastMCP.
"""

from __future__ import annotations

from typing import Any

from gateway.ops.codec import DecodeError, loads

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in one message (deeper ones would exhaust the stack)."""


class Malformed(Exception):
    """The message cannot be served; `response` is the JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id

    @property
    def response(self) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": self.request_id, "error": {"code": self.code, "message": str(self)}}


def decode(body: bytes | str) -> Any:
    """The checked JSON value of `body` (a message, or a batch of them); raises `Malformed`."""
    try:
        value = loads(body)
    except (DecodeError, UnicodeDecodeError) as error:  # too deep for the decoder, or not JSON
        if _brackets(body) > MAX_DEPTH:
            raise Malformed(INVALID_REQUEST, f"Invalid Request: nested deeper than {MAX_DEPTH} levels") from None
        raise Malformed(PARSE_ERROR, f"Parse error: {error}") from None
    if _brackets(body) > MAX_DEPTH and _too_deep(value):
        raise Malformed(INVALID_REQUEST, f"Invalid Request: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        for item in value:
            check(item)
    else:
        check(value)
    return value


def _brackets(body: bytes | str) -> int:
    if isinstance(body, str):
        return body.count("[") + body.count("{")
    return body.count(b"[") + body.count(b"{")


def _too_deep(value: Any) -> bool:
    level = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def check(message: Any) -> None:
    """Refuse a message whose envelope fields have the wrong types (anything else is left to the SDK)."""
    if not isinstance(message, dict):
        return  # not a message at all: the SDK answers that
    request_id = message.get("id")
    if request_id is not None and not _valid_id(request_id):
        raise Malformed(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
    if "method" in message and not isinstance(message["method"], str):
        raise Malformed(INVALID_REQUEST, "Invalid Request: method must be a string", request_id)
    params = message.get("params")
    if params is None:
        return
    if not isinstance(params, dict):
        raise Malformed(INVALID_REQUEST, "Invalid Request: params must be an object", request_id)
    meta = params.get("_meta")
    if meta is not None and not isinstance(meta, dict):
        raise Malformed(INVALID_PARAMS, "Invalid params: _meta must be an object", request_id)
    if meta is not None and not isinstance(meta.get(PROTOCOL_VERSION_META, ""), str):
        raise Malformed(INVALID_PARAMS, f"Invalid params: _meta {PROTOCOL_VERSION_META} must be a string", request_id)
    if (
        message.get("method") == "notifications/cancelled"
        and "requestId" in params
        and not _valid_id(params["requestId"])
    ):
        raise Malformed(INVALID_PARAMS, "Invalid params: requestId must be a string or an integer", request_id)
