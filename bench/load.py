"""The load generator: 16 keep-alive connections sending stateless `tools/call` POSTs back to back, each
response checked. wrk (C, cheap) when it is installed, else the lean asyncio client of `bench.clients`;
the serving process's CPU time per call does not depend on which."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.clients import MODERN, HTTPClient

SCRIPT = Path(__file__).with_name("wrk_call.lua")


@dataclass
class Load:
    requests: int
    seconds: float
    failures: int
    generator: str

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "python"


async def drive(
    port: int,
    tool: str,
    *,
    variants: int,
    seconds: float,
    connections: int = 16,
    path: str = "/mcp",
    using: str | None = None,
    protocol: str = MODERN,
) -> Load:
    """Load `tool` at 127.0.0.1:`port` for `seconds`, cycling `variants` distinct arguments (`using`: "wrk" or
    "python", default the best installed), in stateless requests of `protocol`'s era."""
    if (using or generator()) == "wrk":
        return await _wrk(port, tool, variants, seconds, connections, path, protocol)
    return await _python(port, tool, variants, seconds, connections, path, protocol)


async def _wrk(port: int, tool: str, variants: int, seconds: float, connections: int, path: str, protocol: str) -> Load:
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(SCRIPT),
        f"http://127.0.0.1:{port}{path}",
        "--",
        tool,
        str(variants),
        protocol,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    for line in out.decode().splitlines():
        if line.startswith("BENCH "):
            doc = json.loads(line[6:])
            return Load(doc["requests"], doc["seconds"], doc["failures"] + doc["socket_errors"], "wrk")
    raise RuntimeError(f"wrk gave no figures: {out.decode()[-500:]} {err.decode()[-500:]}")


async def _python(
    port: int, tool: str, variants: int, seconds: float, connections: int, path: str, protocol: str
) -> Load:
    clients = [HTTPClient("127.0.0.1", port, path, protocol) for _ in range(connections)]
    for client in clients:
        await client.start()
    done = failures = 0
    stop_at = time.perf_counter() + seconds

    async def worker(client: HTTPClient, offset: int) -> None:
        nonlocal done, failures
        n = offset
        while time.perf_counter() < stop_at:
            text = f"hello-{n % variants + 1}"
            try:
                result = await client.call(tool, {"text": text})
                if result["content"][0]["text"] != text or result.get("isError"):
                    failures += 1
            except RuntimeError:
                failures += 1
            n += 1
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(client, i) for i, client in enumerate(clients)))
    elapsed = time.perf_counter() - began
    for client in clients:
        await client.close()
    return Load(done, elapsed, failures, "python")
