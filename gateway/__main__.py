"""`python -m gateway` is `mcp-gateway`."""

from gateway.cli import main

main()
