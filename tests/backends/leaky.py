"""A test backend whose one tool fails quoting a credential (redaction tests), with a prompt, a resource and
a resource template for the per-client visibility tests.

Run as `python -m tests.backends.leaky`.
"""

from __future__ import annotations

import os
import sys

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

from tests.backends import started

server = FastMCP("leaky")


@server.tool
def leak() -> str:
    """Fail quoting the credential in ECHO_API_TOKEN, in the error and on stderr."""
    secret = os.environ.get("ECHO_API_TOKEN", "")
    print(f"leaky backend: calling upstream with Authorization: Bearer {secret}", file=sys.stderr, flush=True)
    raise ToolError(f"upstream rejected credential {secret} (HTTP 401)")


@server.prompt
def greeting(name: str) -> str:
    """Greet someone."""
    return f"Hello, {name}."


@server.resource("notes://today", name="notes")
def notes() -> str:
    """Today's notes."""
    return "nothing planned"


@server.resource("notes://day/{day}", name="day_notes")
def day_notes(day: str) -> str:
    """One day's notes."""
    return f"notes for {day}"


if __name__ == "__main__":
    started()
    server.run(show_banner=False)
