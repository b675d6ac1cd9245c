"""The `slack` MCP server."""
