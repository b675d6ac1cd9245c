"""Run a built-in server on its own: `python -m servers.<name> [--transport stdio|http|sse]`."""

from __future__ import annotations

import argparse
import gc
import os
from collections.abc import Callable

from fastmcp import FastMCP

from gateway.ops import logs


def run_server(create_server: Callable[[], FastMCP], argv: list[str] | None = None) -> None:
    """Parse the standalone command line and serve the server it builds."""
    parser = argparse.ArgumentParser(description=f"Run the {create_server.__module__} MCP server.")
    parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logs.setup(os.environ)  # the gateway's log format (JSON records when the gateway runs it, which relays them)
    server = create_server()
    if not gc.isenabled():  # start-up is over (see servers/__init__.py): freeze what it made, collect again
        gc.freeze()
        gc.enable()
    if args.transport == "stdio":
        server.run(transport="stdio", show_banner=False)
    else:
        server.run(transport=args.transport, host=args.host, port=args.port, show_banner=False)
    # Served: the interpreter's shutdown would walk every object in a last full collection (most of a
    # second for ai_memory's heap, while the gateway waits for it to exit); frozen objects are skipped.
    gc.freeze()
