"""The hot path's JSON codec: orjson (about 3x the standard library on MCP messages, see docs/benchmarks.md),
with the standard library behind it for the few values orjson refuses to encode (lone surrogates, integers
past 64 bits), so an answer is never lost to the codec.

`loads` takes bytes or str. What orjson refuses but is JSON all the same (NaN and Infinity, integers past
64 bits, surrogate escapes) is decoded by the standard library, as before; anything else raises
`DecodeError` (`ValueError`), nesting too deep included (the standard library would raise RecursionError).

`whole_lines` frames newline-delimited JSON (the stdio front's stdin, a stdio backend's stdout).
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


def whole_lines(buffer: bytearray, data: bytes) -> list[bytes]:
    """The whole lines `data` completes, with what `buffer` held before it; the unfinished rest stays in
    `buffer`. A chunk that is one whole line, the usual, is handed back as it came (newline included, which
    JSON ignores), without a copy into the buffer; other lines come without their newline."""
    if not buffer and data.endswith(b"\n") and data.find(b"\n") == len(data) - 1:
        return [data]
    buffer += data
    lines = []
    start = 0
    while (end := buffer.find(b"\n", start)) >= 0:
        lines.append(bytes(buffer[start:end]))
        start = end + 1
    del buffer[:start]
    return lines
