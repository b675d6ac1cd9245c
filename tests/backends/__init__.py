"""MCP servers written for the tests: real servers run as subprocesses behind the gateway
(`python -m tests.backends.<name>`).

Their start-up runs without cyclic garbage collection: importing FastMCP and the MCP SDK makes hundreds of
thousands of objects that all stay, and the collector would walk them over and over (~15 % of a backend's
start-up CPU, and the suite starts hundreds of backends). While `python -m` locates the module it runs,
`sys.argv[0]` is "-m" (documented for `-m`), so that is when this package turns collection off: a test
that imports a backend module keeps its own. Each backend calls `started` once its server is built.
"""

import gc
import json
import os
import sys
import threading
from typing import Any

if sys.argv[:1] == ["-m"]:
    gc.disable()


def started() -> None:
    """The server is built: what start-up made is frozen (no later collection walks it) and collection
    resumes."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def refuse_on_stdin(method: str, error: dict[str, Any]) -> None:
    """Answer each stdio request for `method` with the JSON-RPC `error` before the server sees it (a thread
    between the real stdin and the server's): a backend that does not speak what `method` opens."""
    read_end, write_end = os.pipe()
    real_stdin = os.fdopen(os.dup(0), "rb", buffering=0)
    # the wire's own descriptor: the SDK's stdio server points fd 1 at stderr once it runs (stray prints)
    real_stdout = os.dup(1)
    os.dup2(read_end, 0)
    os.close(read_end)

    def pump() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as forward:
            for line in iter(real_stdin.readline, b""):
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if isinstance(message, dict) and message.get("method") == method:
                    answer = {"jsonrpc": "2.0", "id": message.get("id"), "error": error}
                    os.write(real_stdout, json.dumps(answer).encode() + b"\n")
                    continue
                forward.write(line)

    threading.Thread(target=pump, daemon=True).start()
