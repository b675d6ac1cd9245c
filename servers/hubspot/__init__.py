"""The `hubspot` MCP server."""
