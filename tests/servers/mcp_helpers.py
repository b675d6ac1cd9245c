"""Calling tools through a real in-memory MCP client, as the gateway would."""

from __future__ import annotations

import base64
from typing import Any

from fastmcp import Client

from servers.common import RetryPolicy

# Short backoffs keep 5xx/transport retry tests fast; 429 waits still come from the vendor's headers.
FAST = RetryPolicy(backoff_base=0.01, backoff_max=0.05)


async def ok(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call `tool` and return its structured content, failing on a tool error."""
    result = await client.call_tool(tool, args or {}, raise_on_error=False)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def err(client: Client, tool: str, args: dict[str, Any] | None = None) -> str:
    """Call `tool`, require a tool error, and return its message."""
    result = await client.call_tool(tool, args or {}, raise_on_error=False)
    assert result.is_error, result.structured_content
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert "Traceback" not in text
    return text


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
