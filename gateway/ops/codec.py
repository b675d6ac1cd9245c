"""The hot path's JSON codec: orjson (about 3x the standard library on MCP messages, see docs/benchmarks.md),
with the standard library behind it for the few values orjson refuses to encode (lone surrogates, integers
past 64 bits), so an answer is never lost to the codec.

`loads` takes bytes or str. What orjson refuses but is JSON all the same (NaN and Infinity, integers past
64 bits, surrogate escapes) is decoded by the standard library, as before; anything else raises
`DecodeError` (`ValueError`), nesting too deep included (the standard library would raise RecursionError).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

DecodeError = ValueError


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: e.g. a lone surrogate in a string
        return json.dumps(value, separators=(",", ":"), default=str).encode()
