"""A peer for the table: FastMCP's `create_proxy` over a connected client to the stdio bench backend, served
over Streamable HTTP. `python -m bench.fastmcp_proxy PORT`"""

from __future__ import annotations

import asyncio
import sys

from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy


async def main(port: int) -> None:
    client = Client(StdioTransport(sys.executable, ["-m", "bench.backend"]))
    async with client:
        proxy = create_proxy(client)
        await proxy.run_http_async(show_banner=False, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
