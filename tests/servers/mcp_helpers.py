"""Calling tools through a real in-memory MCP client, as the gateway would."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import respx
from fastmcp import Client, FastMCP

from servers.common import RetryPolicy

# Short backoffs keep 5xx/transport retry tests fast; 429 waits still come from the vendor's headers.
FAST = RetryPolicy(backoff_base=0.01, backoff_max=0.05)


@contextmanager
def vendor_api(monkeypatch: pytest.MonkeyPatch, base: str, **env: str) -> Iterator[respx.MockRouter]:
    """Point a server at `base` with credentials `env`, and answer its requests there with respx."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with respx.mock(base_url=base, assert_all_called=False) as router:
        yield router


@asynccontextmanager
async def connected(create_server: Callable[..., FastMCP]) -> AsyncIterator[Client]:
    """An in-memory MCP client of the server, with short retry backoffs."""
    async with Client(create_server(policy=FAST)) as client:
        yield client


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
