"""A test backend whose one tool fails quoting a credential (redaction tests).

Run as `python -m tests.backends.leaky`.
"""

from __future__ import annotations

import os
import sys

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

server = FastMCP("leaky")


@server.tool
def leak() -> str:
    """Fail quoting the credential in ECHO_API_TOKEN, in the error and on stderr."""
    secret = os.environ.get("ECHO_API_TOKEN", "")
    print(f"leaky backend: calling upstream with Authorization: Bearer {secret}", file=sys.stderr, flush=True)
    raise ToolError(f"upstream rejected credential {secret} (HTTP 401)")


if __name__ == "__main__":
    server.run(show_banner=False)
