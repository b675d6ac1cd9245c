"""The `ai_memory` MCP server."""
