"""Gateway overhead: added latency over calling a stdio backend directly (both protocol eras), and the helpers
the other benchmark modules share (config files, ports, the backend command)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.clients import LEGACY, MODERN, HTTPClient, StdioClient
from bench.procs import children, cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
BACKEND = [sys.executable, "-m", "bench.backend"]
UNCACHED = {"cache": {"enabled": False}}  # echo is read-only: measure forwarding, not the result cache


def env() -> dict[str, str]:
    child = dict(os.environ)
    child["PYTHONPATH"] = str(ROOT) + os.pathsep + child.get("PYTHONPATH", "")
    child.setdefault("MCP_GATEWAY_LOG_LEVEL", "WARNING")
    child.setdefault("FASTMCP_LOG_LEVEL", "WARNING")
    return child


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gateway_config(directory: Path, servers: dict[str, Any], gateway: dict[str, Any] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers, "gateway": gateway or {}}))
    return path


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def latency(calls: int, directory: Path, backend: str = "bench.backend") -> dict[str, Any]:
    """p50/p99 of sequential calls: the stdio backend `python -m <backend>` directly vs the same backend through
    the gateway, and the CPU time per call (utime + stime over the measured calls) of the gateway, its backend
    and the direct one."""
    config = gateway_config(directory, {"bench": {"command": "python", "args": ["-m", backend]}}, UNCACHED)
    gateway_argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    report: dict[str, Any] = {}
    for era in (LEGACY, MODERN):
        direct = StdioClient([sys.executable, "-m", backend], era, env())
        through = StdioClient(gateway_argv, era, env())
        await direct.start()
        await through.start()
        samples: dict[str, list[float]] = {"direct": [], "gateway": []}
        for client, tool in ((direct, "echo"), (through, "bench_echo")):
            for _ in range(200):  # warm-up
                await client.call(tool, {"text": "warm"})
        pids = {"direct": direct.proc.pid, "gateway": through.proc.pid, "behind": children(through.proc.pid)[0]}
        cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        for _ in range(calls // 100):  # interleaved blocks, so drift hits both sides alike
            for name, client, tool in (("direct", direct, "echo"), ("gateway", through, "bench_echo")):
                for _ in range(100):
                    began = time.perf_counter()
                    result = await client.call(tool, {"text": "hello"})
                    samples[name].append((time.perf_counter() - began) * 1000)
                    assert result["content"][0]["text"] == "hello", result
        cpu = {name: (cpu_seconds(pid) - cpu[name]) / len(samples["direct"]) * 1e6 for name, pid in pids.items()}
        await direct.close()
        await through.close()
        d50, g50 = statistics.median(samples["direct"]), statistics.median(samples["gateway"])
        report[era] = {
            "direct_p50_ms": d50,
            "direct_p99_ms": pct(samples["direct"], 99),
            "gateway_p50_ms": g50,
            "gateway_p99_ms": pct(samples["gateway"], 99),
            "added_p50_ms": g50 - d50,
            "added_p99_ms": pct(samples["gateway"], 99) - pct(samples["direct"], 99),
            "ratio_p50": g50 / d50,
            "gateway_cpu_us": cpu["gateway"],
            "backend_cpu_us_direct": cpu["direct"],
            "backend_cpu_us_behind": cpu["behind"],
        }
    # Over stdio the gateway's backends speak its client's era (gateway.backends.era), so each row's backend
    # behind the gateway is in that row's era; the 2026-07-28 direct figure is printed beside the handshake
    # row's for the envelope's cost to the backend.
    report[LEGACY]["backend_cpu_us_direct_modern"] = report[MODERN]["backend_cpu_us_direct"]
    return report


async def load(port: int, tool: str, clients: int, seconds: float) -> float:
    """Calls/s from `clients` keep-alive connections, each calling back-to-back for `seconds`."""
    connections = [HTTPClient("127.0.0.1", port) for _ in range(clients)]
    for connection in connections:
        await connection.start()
    for connection in connections:  # warm-up
        await connection.call(tool, {"text": "warm"})
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(connection: HTTPClient) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            result = await connection.call(tool, {"text": "hello"})
            assert result["content"][0]["text"] == "hello", result
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    elapsed = time.perf_counter() - began
    for connection in connections:
        await connection.close()
    return done / elapsed


def print_latency(latency: dict[str, Any], behind: str = "FastMCP's `bench.backend`") -> None:
    print(
        "Added latency of a tool call through the gateway (stdio client -> stdio backend), sequential calls, "
        f"behind {behind}"
    )
    for era, row in latency.items():
        print(
            f"  {era}: direct p50 {row['direct_p50_ms']:.3f} ms p99 {row['direct_p99_ms']:.3f} ms | "
            f"gateway p50 {row['gateway_p50_ms']:.3f} ms p99 {row['gateway_p99_ms']:.3f} ms | "
            f"added p50 {row['added_p50_ms']:+.3f} ms p99 {row['added_p99_ms']:+.3f} ms | "
            f"ratio p50 {row['ratio_p50']:.2f}x"
        )
        modern = row.get("backend_cpu_us_direct_modern")
        print(
            f"    CPU per call: gateway {row['gateway_cpu_us']:.0f} µs | backend behind it "
            f"{row['backend_cpu_us_behind']:.0f} µs (in {era}, the client's), called directly "
            f"{row['backend_cpu_us_direct']:.0f} µs"
            + (f" (in 2026-07-28: {modern:.0f} µs)" if modern is not None else "")
        )
