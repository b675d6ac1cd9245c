"""The benchmark backend: one `echo` tool, served by FastMCP over stdio or Streamable HTTP.

`python -m bench.backend` (stdio) or `python -m bench.backend --http PORT`.
"""

from __future__ import annotations

import argparse

from fastmcp import FastMCP
from mcp_types import ToolAnnotations

server = FastMCP("bench")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None)
    args = parser.parse_args()
    if args.http:
        server.run(transport="http", host="127.0.0.1", port=args.http, show_banner=False, log_level="WARNING")
    else:
        server.run(show_banner=False, log_level="WARNING")
