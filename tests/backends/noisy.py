"""A test backend that logs the way a third-party server does (Python logging's default format on stderr)
and writes multi-line messages: a logged traceback, a two-line message, a tool that crashes (FastMCP logs
its traceback).

Run as `python -m tests.backends.noisy`.
"""

from __future__ import annotations

import logging
import sys

from fastmcp import FastMCP

from tests.backends import started

logging.basicConfig(level=logging.INFO)  # `LEVEL:name:message` lines, tracebacks under them
log = logging.getLogger("noisy")
server = FastMCP("noisy")


@server.tool
def shout() -> str:
    """Write two multi-line messages to stderr: a logged traceback and an indented continuation."""
    try:
        raise ValueError("the lookup table is empty")
    except ValueError:
        log.exception("lookup failed")
    print("noisy: first line of one message\n    and its indented second line", file=sys.stderr, flush=True)
    return "shouted"


@server.tool
def crash() -> str:
    """Raise an unexpected exception."""
    raise RuntimeError("noisy crashed")


if __name__ == "__main__":
    started()
    server.run(show_banner=False)
