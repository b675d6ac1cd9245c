"""Starting a stdio backend's child process, with nothing of the MCP stack imported.

`start` is the one way a stdio backend's process is made: the session (`gateway.backends.session`) calls it
for every start and restart, and the CLI calls it for the first start before it imports the MCP SDK, so the
child's own imports run on the other core while the gateway imports its stack (`Backend.adopt`). This
module imports only the standard library and the config schema.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from typing import Any

from gateway.config.loader import ServerConfig

_MAX_LINE = 2**27

# Backends log one line per record: FastMCP ones without its Rich console handler (which wraps a message
# over several lines), the built-in servers as JSON records (servers/runner.py), which the gateway relays as
# records in its own format (gateway.ops.logs.BackendStderr). A server's `env` may set either otherwise.
_PLAIN_LOGS = {"FASTMCP_ENABLE_RICH_LOGGING": "false", "MCP_GATEWAY_LOG_FORMAT": "json"}

# What a child inherits of the gateway's environment: the MCP SDK's choice (`mcp.client.stdio.
# get_default_environment`), repeated here because importing it imports the whole SDK.
_INHERITED = (
    (
        "APPDATA",
        "HOMEDRIVE",
        "HOMEPATH",
        "LOCALAPPDATA",
        "PATH",
        "PATHEXT",
        "PROCESSOR_ARCHITECTURE",
        "SYSTEMDRIVE",
        "SYSTEMROOT",
        "TEMP",
        "USERNAME",
        "USERPROFILE",
    )
    if sys.platform == "win32"
    else ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
)


def inherited_environment() -> dict[str, str]:
    """The variables of the gateway's environment a child gets (shell functions, `()...`, left out)."""
    return {
        key: value for key in _INHERITED if (value := os.environ.get(key)) is not None and not value.startswith("()")
    }


def resolve_command(command: str) -> str:
    """`python`/`python3` mean the interpreter running the gateway, so built-ins work in any venv."""
    if command in ("python", "python3"):
        return sys.executable
    return shutil.which(command) or command


async def start(config: ServerConfig, stderr: Any = None) -> asyncio.subprocess.Process:
    """Spawn the stdio backend `config` (in its own process group); its stderr goes to `stderr` (default:
    the gateway's; see `gateway.ops.logs.BackendStderr`)."""
    assert config.command is not None
    return await asyncio.create_subprocess_exec(
        resolve_command(config.command),
        *config.args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr or sys.stderr,
        env=inherited_environment() | _PLAIN_LOGS | (config.env or {}),
        cwd=config.cwd,
        limit=_MAX_LINE,
        start_new_session=True,
    )
