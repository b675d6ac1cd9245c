"""Starting a stdio backend's child process, with nothing of the MCP stack imported.

`start` is the one way a stdio backend's process is made: the session (`gateway.backends.session`) calls it
for every start and restart, and `serve` and the CLI's commands call it (through `start_all`) for the first
start before they import the MCP SDK, so the child's own imports run on the other core while the gateway
imports its stack (`Backend.adopt`). This module imports only the standard library and the config schema.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.config.loader import ServerConfig

if TYPE_CHECKING:
    from gateway.config.loader import GatewayConfig

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


class Wire(asyncio.SubprocessProtocol):
    """The child's end of the pipe: its stdout as it is received, and its exit. What arrives before a pipe
    takes the child (`attach`: a child the CLI started early may exit before its backend adopts it) is held
    and handed over then."""

    def __init__(self) -> None:
        self._on_data: Callable[[bytes], None] | None = None
        self._on_end: Callable[[], None] | None = None
        self._early: list[bytes | None] = []  # stdout chunks, then None at EOF
        self.exited = asyncio.get_running_loop().create_future()

    def attach(self, on_data: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        """Send the child's stdout to `on_data` and its EOF to `on_end` from now on (and what came before)."""
        self._on_data, self._on_end = on_data, on_end
        for data in self._early:
            if data is None:
                on_end()
            else:
                on_data(data)
        self._early.clear()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            if self._on_data is None:
                self._early.append(data)
            else:
                self._on_data(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            if self._on_end is None:
                self._early.append(None)
            else:
                self._on_end()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


@dataclass(frozen=True)
class Child:
    """A started stdio backend process: its transport (pipes, pid, signals) and its protocol."""

    transport: asyncio.SubprocessTransport
    wire: Wire

    @property
    def pid(self) -> int:
        return self.transport.get_pid()

    @property
    def returncode(self) -> int | None:
        return self.transport.get_returncode()

    async def wait(self) -> None:
        """Until the process has exited."""
        await asyncio.shield(self.wire.exited)


async def start(config: ServerConfig, stderr: Any = None) -> Child:
    """Spawn the stdio backend `config`; its stderr goes to `stderr` (default: the gateway's; see
    `gateway.ops.logs.BackendStderr`).

    A process group of its own (signals to the gateway's group, a terminal's Ctrl-C, miss it; stopping it
    ends the whole group), not a session of its own: with the kernel's scheduler autogroups (on by default)
    a new session is a new scheduling group, and on a loaded machine the child then waits longer for a core
    on every wake-up and costs more CPU per call (measured: docs/benchmarks.md, issue 14). `preexec_fn`, not
    `process_group=0`: uvloop's subprocess_exec supports only the former."""
    assert config.command is not None
    wire = Wire()
    transport, _ = await asyncio.get_running_loop().subprocess_exec(
        lambda: wire,
        resolve_command(config.command),
        *config.args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr or sys.stderr,
        env=inherited_environment() | _PLAIN_LOGS | (config.env or {}),
        cwd=config.cwd,
        preexec_fn=os.setpgrp,
    )
    return Child(transport, wire)


async def start_all(config: GatewayConfig, stderr: Callable[[str], Any]) -> dict[str, Child]:
    """Start the child of every enabled stdio server of `config` now (its stderr: `stderr(name)`), by
    server name. A child that cannot be started is left to its backend, whose own start reports why."""
    spawned: dict[str, Child] = {}
    for name, server in config.enabled_servers.items():
        if server.kind == "stdio":
            try:
                spawned[name] = await start(server, stderr(name))
            except OSError:
                continue
    return spawned


async def reap(spawned: dict[str, Child]) -> None:
    """Stop the children of `start_all` that no backend adopted (what started them ended first)."""
    import signal

    for child in spawned.values():
        if child.returncode is None:
            with suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            await child.wait()
        child.transport.close()
