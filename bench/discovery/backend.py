"""`python -m bench.discovery.backend CATALOG.json SERVER`: a stdio MCP server offering the tools that
`CATALOG.json` (written by `bench.discovery`) lists for SERVER; each call answers with its own name."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastmcp import FastMCP
from fastmcp.server.context import Context
from fastmcp.tools.base import Tool, ToolResult
from mcp_types import TextContent


class CatalogTool(Tool):
    """A tool known only by its definition: running it says which tool ran."""

    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:  # type: ignore[override]
        return ToolResult(content=[TextContent(type="text", text=f"{self.name} ran")])


def main() -> None:
    catalog, server_name = sys.argv[1], sys.argv[2]
    server = FastMCP(server_name)
    for definition in json.loads(Path(catalog).read_text(encoding="utf-8"))[server_name]:
        server.add_tool(
            CatalogTool(
                name=definition["name"],
                description=definition.get("description"),
                parameters=definition.get("inputSchema") or {"type": "object"},
            )
        )
    server.run(show_banner=False)


if __name__ == "__main__":
    main()
