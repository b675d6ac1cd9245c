"""The hot path's JSON codec: orjson (about 3x the standard library on MCP messages, see docs/benchmarks.md),
with the standard library behind it for the few values orjson refuses to encode (lone surrogates, integers
past 64 bits), so an answer is never lost to the codec.

`loads` takes bytes or str and raises `DecodeError` (a `ValueError`, like `json.JSONDecodeError`) for
anything that is not JSON orjson accepts: NaN and Infinity, integers past 64 bits, invalid UTF-8 or
surrogate escapes, nesting past 1024. Callers treat such a body as doubtful and hand it to the framework.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

DecodeError = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: e.g. a lone surrogate in a string
        return json.dumps(value, separators=(",", ":"), default=str).encode()
