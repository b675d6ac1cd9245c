"""mcp-gateway: one MCP endpoint in front of every configured backend server."""

__version__ = "0.1.0"
