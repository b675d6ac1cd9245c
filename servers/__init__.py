"""The built-in MCP servers: one package per integration, each runnable with `python -m servers.<name>`.

Run on its own (`python -m`, as the gateway runs a stdio one), a server starts without cyclic garbage
collection: importing FastMCP and the MCP SDK makes hundreds of thousands of objects that all stay, and the
collector would walk them over and over (~15 % of the start-up CPU). While `python -m` locates the module
it runs, `sys.argv[0]` is "-m" (documented for `-m`), so that is when this package turns collection off (a
gateway or a test that imports a server keeps its own); `servers.runner.run_server` turns it back on once
the server is built.
"""

import gc
import sys

if sys.argv[:1] == ["-m"]:
    gc.disable()
