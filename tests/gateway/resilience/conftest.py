"""Helpers for the resilience tests: the faulty and garbage backends, a client, polling."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, module_over_http


def faulty_server(**env: str) -> dict[str, Any]:
    return {"command": "python", "args": ["-m", "tests.backends.faulty"], "env": {"PYTHONPATH": str(ROOT), **env}}


def garbage_server() -> dict[str, Any]:
    return {"command": "python", "args": ["-m", "tests.backends.garbage"], "env": {"PYTHONPATH": str(ROOT)}}


def faulty_http() -> AbstractContextManager[str]:
    """One faulty backend over Streamable HTTP (one process, one set of counters, for several gateways)."""
    return module_over_http("tests.backends.faulty")


def client(gateway: GatewayProcess) -> Client:
    return Client(StreamableHttpTransport(gateway.base + "/mcp"))


async def call(c: Client, name: str, arguments: dict[str, Any] | None = None) -> tuple[bool, str, Any]:
    """(is_error, text, raw result) of one tool call."""
    result = await c.call_tool(name, arguments or {}, raise_on_error=False)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    return bool(result.is_error), text, result


async def health(gateway: GatewayProcess) -> dict[str, Any]:
    async with local_http.async_client() as http:
        return (await http.get(gateway.base + "/health", timeout=5)).json()


async def until(predicate: Callable[[], Any], timeout: float = 120, interval: float = 0.05) -> Any:
    """Await `predicate()` (sync or async) until it returns something truthy; return that. `timeout` only
    bounds the wait (a loaded machine may be slow), it is never what a test checks."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await anyio.sleep(interval)


async def stats(c: Client, name: str = "faulty_stats") -> dict[str, int]:
    result = await c.call_tool(name, {})
    return result.structured_content or {}  # type: ignore[return-value]
