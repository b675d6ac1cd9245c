"""A backend whose `meta` tool answers with the `_meta` it received (to check trace propagation).

Run as `python -m tests.ops.meta_backend [--http PORT]`.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastmcp import Context, FastMCP

server = FastMCP("meta")


@server.tool
def meta(ctx: Context) -> dict[str, Any]:
    """The request's `_meta`, as the backend saw it."""
    received = ctx.request_context.meta if ctx.request_context is not None else None
    if received is None:
        return {}
    if hasattr(received, "model_dump"):
        return received.model_dump(by_alias=True, exclude_none=True)
    return {key: value for key, value in dict(received).items() if isinstance(value, str | int | float)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None)
    args = parser.parse_args()
    if args.http:
        server.run(transport="http", host="127.0.0.1", port=args.http, show_banner=False)
    else:
        server.run(show_banner=False)


if __name__ == "__main__":
    main()
