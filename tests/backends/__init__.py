"""MCP servers written for the tests: real servers run as subprocesses behind the gateway
(`python -m tests.backends.<name>`).

Their start-up runs without cyclic garbage collection: importing FastMCP and the MCP SDK makes hundreds of
thousands of objects that all stay, and the collector would walk them over and over (~15 % of a backend's
start-up CPU, and the suite starts hundreds of backends). While `python -m` locates the module it runs,
`sys.argv[0]` is "-m" (documented for `-m`), so that is when this package turns collection off: a test
that imports a backend module keeps its own. Each backend calls `started` once its server is built.
"""

import gc
import sys

if sys.argv[:1] == ["-m"]:
    gc.disable()


def started() -> None:
    """The server is built: what start-up made is frozen (no later collection walks it) and collection
    resumes."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
