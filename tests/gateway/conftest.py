"""Gateway processes shared by the end-to-end tests of one module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import SSETransport, StdioTransport, StreamableHttpTransport

from tests.helpers.procs import ROOT, GatewayProcess, child_env, http_backend, stdio_echo_server, write_config


@pytest.fixture(scope="module")
def remote_backend() -> Iterator[str]:
    with http_backend("remote") as url:
        yield url


@pytest.fixture(scope="module")
def gateway_config(tmp_path_factory: pytest.TempPathFactory, remote_backend: str) -> Path:
    directory = tmp_path_factory.mktemp("gateway")
    return write_config(directory, {"local": stdio_echo_server(), "remote": {"url": remote_backend}})


@pytest.fixture(scope="module")
def gateway(gateway_config: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(gateway_config)
    try:
        yield process
    finally:
        process.stop()


def client_for(transport: str, gateway: GatewayProcess | None, config: Path, **kwargs: object) -> Client:
    """A real MCP client speaking `transport` to the gateway."""
    if transport == "stdio":
        return Client(
            StdioTransport(
                sys.executable, ["-m", "gateway", "serve", "--config", str(config)], env=child_env(), cwd=str(ROOT)
            ),
            **kwargs,  # type: ignore[arg-type]
        )
    assert gateway is not None
    if transport == "sse":
        return Client(SSETransport(gateway.base + "/sse"), **kwargs)  # type: ignore[arg-type]
    return Client(StreamableHttpTransport(gateway.base + "/mcp"), **kwargs)  # type: ignore[arg-type]
