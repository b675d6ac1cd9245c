"""Lean MCP clients for measuring: raw JSON-RPC over a stdio pipe and over HTTP/1.1 keep-alive.

They do the least a correct client must, so the figures show the server side, and both sides of a
comparison are measured with the same client.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class StdioClient:
    """One MCP session over a child's stdin/stdout, requests one at a time."""

    def __init__(self, argv: list[str], era: str, env: dict[str, str] | None = None) -> None:
        self.argv, self.era, self.env = argv, era, env
        self.next_id = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=self.env,
            limit=2**24,
        )
        if self.era == LEGACY:
            await self.request(
                "initialize",
                {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
            )
            self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _write(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        if self.era == MODERN:
            params = {**params, "_meta": ENVELOPE}
        self._write({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        assert self.proc.stdout is not None
        while True:
            message = json.loads(await self.proc.stdout.readline())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message["result"]

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self.request("tools/call", {"name": tool, "arguments": arguments})

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()


class HTTPClient:
    """One keep-alive HTTP/1.1 connection speaking stateless Streamable HTTP: 2026-07-28 by default, or
    `protocol` (an older version: the request without the 2026 `_meta` envelope, as a stateless server of
    that era takes it without a handshake)."""

    def __init__(self, host: str, port: int, path: str = "/mcp", protocol: str = MODERN) -> None:
        self.host, self.port, self.path = host, port, path
        self.protocol = protocol
        self.next_id = 0

    async def start(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": self.next_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}
                | ({"_meta": ENVELOPE} if self.protocol == MODERN else {}),
            }
        ).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {self.protocol}\r\n"
            f"Mcp-Method: tools/call\r\nMcp-Name: {tool}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status, headers = await self._read_head()
        payload = await self._read_body(headers)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
        if headers.get("content-type", "").startswith("text/event-stream"):
            messages = [json.loads(line[5:]) for line in payload.decode().splitlines() if line.startswith("data:")]
            message = next(m for m in messages if m.get("id") == self.next_id)
        else:
            message = json.loads(payload)
        if "error" in message:
            raise RuntimeError(message["error"])
        return message["result"]

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        return status, headers

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        chunks = []
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            if size == 0:
                await self.reader.readline()
                return b"".join(chunks)
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readline()

    async def close(self) -> None:
        self.writer.close()


def python() -> str:
    return sys.executable
