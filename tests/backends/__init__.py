"""MCP servers written for the tests: real servers run as subprocesses behind the gateway."""
