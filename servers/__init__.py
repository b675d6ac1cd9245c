"""The built-in MCP servers: one package per integration, each runnable with `python -m servers.<name>`."""
