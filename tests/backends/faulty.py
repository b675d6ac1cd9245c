"""A test backend that counts its calls and misbehaves on demand: fails (upstream 5xx text), fails every
other call, hangs (and records the cancellation it is sent), crashes.

Run as `python -m tests.backends.faulty [--http PORT]`. `FAULTY_CANCEL_FILE`: where `hang` appends a line when
it is cancelled.
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from mcp_types import ToolAnnotations

from tests.backends import started

READ = ToolAnnotations(read_only_hint=True)
WRITE = ToolAnnotations(read_only_hint=False, idempotent_hint=False)

server = FastMCP("faulty")
COUNTS: dict[str, int] = {}
STORE: dict[str, str] = {}
STATE = {"mode": "ok"}


def _count(name: str) -> int:
    COUNTS[name] = COUNTS.get(name, 0) + 1
    return COUNTS[name]


def _maybe_fail() -> None:
    if STATE["mode"] == "fail":
        raise ToolError("faulty: server error 503: the upstream API is down")


@server.tool(annotations=READ)
def read(key: str) -> str:
    """A read that answers `<key>#<how many reads so far>`."""
    n = _count("read")
    _maybe_fail()
    return f"{key}#{n}"


@server.tool(annotations=READ)
async def slow_read(key: str, seconds: float = 0.5) -> str:
    """A read that takes a while."""
    n = _count("slow_read")
    await anyio.sleep(seconds)
    return f"{key}#{n}"


@server.tool(annotations=READ)
def get(key: str) -> str:
    """Read a stored value."""
    _count("get")
    _maybe_fail()
    return STORE.get(key, "")


@server.tool(annotations=WRITE)
def put(key: str, value: str) -> str:
    """Store a value (a write: never retried, invalidates this server's cached reads)."""
    _count("put")
    STORE[key] = value
    return "stored"


@server.tool(annotations=WRITE)
def set_mode(mode: str) -> str:
    """'ok' or 'fail' (reads then answer an upstream 503)."""
    STATE["mode"] = mode
    return mode


@server.tool(annotations=READ)
def stats() -> dict[str, int]:
    """How many times each tool ran."""
    return dict(COUNTS)


@server.tool(annotations=READ)
def flaky() -> str:
    """Fails every other call (odd calls) with an upstream 503."""
    n = _count("flaky")
    if n % 2:
        raise ToolError(f"faulty: server error 503 on call {n}")
    return f"ok #{n}"


@server.tool(annotations=WRITE)
def fail() -> str:
    """Always fails with an upstream 502 (a write: not retried)."""
    _count("fail")
    raise ToolError("faulty: server error 502: bad gateway")


@server.tool(annotations=WRITE)
def mistake() -> str:
    """A tool error that is the caller's fault, not the backend's."""
    _count("mistake")
    raise ToolError("faulty: no such record: 'x'")


@server.tool(annotations=READ)
async def hang(tag: str = "") -> str:
    """Never answers; records the cancellation the gateway sends."""
    _count("hang")
    try:
        await anyio.sleep_forever()
    finally:
        path = os.environ.get("FAULTY_CANCEL_FILE")
        if path:
            with open(path, "a") as file:
                file.write(f"cancelled {tag}\n")
    return "never"


@server.tool(annotations=WRITE)
def crash() -> str:
    """Exit the whole backend process at once."""
    os._exit(3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None)
    args = parser.parse_args()
    started()
    if args.http:
        server.run(transport="http", host="127.0.0.1", port=args.http, show_banner=False)
    else:
        server.run(show_banner=False)
    sys.exit(0)


if __name__ == "__main__":
    main()
