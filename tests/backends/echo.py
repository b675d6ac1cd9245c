"""A test backend: echo, add, a slow tool, a crash tool, the era it is spoken to in, and a call counter.

Run as `python -m tests.backends.echo [--http PORT]`.
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio
from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations, ToolListChangedNotification

from tests.backends import refuse_on_stdin, started

server = FastMCP("echo")
CALLS = {"count": 0, "cancelled": 0}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Return the text unchanged."""
    CALLS["count"] += 1
    return text


@server.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    CALLS["count"] += 1
    return a + b


@server.tool
def whoami() -> dict[str, object]:
    """Which process answered: the pid and how many calls it has served."""
    return {"pid": os.getpid(), "calls": CALLS["count"], "cancelled": CALLS["cancelled"]}


@server.tool
def protocol(ctx: Context) -> str:
    """The protocol version of the session (or, 2026-07-28, the request) this call came in on."""
    context = ctx.request_context
    return context.protocol_version if context is not None else "none"


@server.tool
def capabilities(ctx: Context) -> list[str]:
    """The client capabilities this call's session (or, 2026-07-28, its request) declares, by name."""
    declared = ctx.session.client_capabilities
    if declared is None:
        return []
    return sorted(name for name in ("sampling", "elicitation", "roots") if getattr(declared, name) is not None)


@server.tool
async def sleep(seconds: float, ctx: Context) -> str:
    """Sleep, reporting progress each tenth of the time."""
    try:
        for step in range(10):
            await ctx.report_progress(step, 10, f"step {step}")
            await anyio.sleep(seconds / 10)
    except anyio.get_cancelled_exc_class():
        CALLS["cancelled"] += 1
        raise
    return f"slept {seconds}"


@server.tool
async def grow(name: str, ctx: Context) -> str:
    """Register a new tool called `name` and announce that the tool list changed."""

    def extra() -> str:
        return f"I am {name}"

    server.tool(name=name)(extra)
    await ctx.send_notification(ToolListChangedNotification())
    return f"added {name}"


@server.tool
def crash() -> str:
    """Exit the whole backend process at once."""
    os._exit(3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve Streamable HTTP on this port")
    parser.add_argument("--name", default=None, help="unused; names the process in ps output")
    parser.add_argument("--modern-only", action="store_true", help="over stdio, refuse the initialize handshake")
    args = parser.parse_args()
    started()
    if args.modern_only and not args.http:  # as a 2026-07-28-only server answers it
        supported = {"supported": ["2026-07-28"], "requested": "2025-11-25"}
        refuse_on_stdin("initialize", {"code": -32022, "message": "Unsupported protocol version", "data": supported})
    if args.http:
        server.run(transport="http", host="127.0.0.1", port=args.http, show_banner=False)
    else:
        server.run(show_banner=False)
    sys.exit(0)


if __name__ == "__main__":
    main()
