"""Helpers for the resilience tests: the faulty and garbage backends, a client, polling."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.helpers.procs import ROOT, GatewayProcess, child_env, stop
from tests.helpers.redis_proc import free_port


def faulty_server(**env: str) -> dict[str, Any]:
    return {"command": "python", "args": ["-m", "tests.backends.faulty"], "env": {"PYTHONPATH": str(ROOT), **env}}


def garbage_server() -> dict[str, Any]:
    return {"command": "python", "args": ["-m", "tests.backends.garbage"], "env": {"PYTHONPATH": str(ROOT)}}


@contextmanager
def faulty_http() -> Iterator[str]:
    """One faulty backend over Streamable HTTP (one process, one set of counters, for several gateways)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.backends.faulty", "--http", str(port)],
        cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("faulty HTTP backend did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


def client(gateway: GatewayProcess) -> Client:
    return Client(StreamableHttpTransport(gateway.base + "/mcp"))


async def call(c: Client, name: str, arguments: dict[str, Any] | None = None) -> tuple[bool, str, Any]:
    """(is_error, text, raw result) of one tool call."""
    result = await c.call_tool(name, arguments or {}, raise_on_error=False)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    return bool(result.is_error), text, result


async def health(gateway: GatewayProcess) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(gateway.base + "/health", timeout=5)).json()


async def until(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    """Await `predicate()` (sync or async) until it returns something truthy; return that."""
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
