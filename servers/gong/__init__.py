"""The `gong` MCP server."""
