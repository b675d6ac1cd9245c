"""Gateway overhead: added latency over calling a stdio backend directly, and Streamable HTTP
throughput next to the same backend served directly by FastMCP."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.clients import LEGACY, MODERN, HTTPClient, StdioClient

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


async def latency(calls: int, directory: Path) -> dict[str, Any]:
    """p50/p99 of sequential calls: stdio backend directly vs the same backend through the gateway."""
    config = gateway_config(directory, {"bench": {"command": "python", "args": ["-m", "bench.backend"]}}, UNCACHED)
    gateway_argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    report: dict[str, Any] = {}
    for era in (LEGACY, MODERN):
        direct, through = StdioClient(BACKEND, era, env()), StdioClient(gateway_argv, era, env())
        await direct.start()
        await through.start()
        samples: dict[str, list[float]] = {"direct": [], "gateway": []}
        for client, tool in ((direct, "echo"), (through, "bench_echo")):
            for _ in range(200):  # warm-up
                await client.call(tool, {"text": "warm"})
        for _ in range(calls // 100):  # interleaved blocks, so drift hits both sides alike
            for name, client, tool in (("direct", direct, "echo"), ("gateway", through, "bench_echo")):
                for _ in range(100):
                    began = time.perf_counter()
                    result = await client.call(tool, {"text": "hello"})
                    samples[name].append((time.perf_counter() - began) * 1000)
                    assert result["content"][0]["text"] == "hello", result
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
        }
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


async def throughput(clients: int, seconds: float, rounds: int, directory: Path) -> dict[str, Any]:
    """Streamable HTTP calls/s: FastMCP serving the backend directly vs the gateway in front of it."""
    direct_port, gateway_port = free_port(), free_port()
    config = gateway_config(directory, {"bench": {"command": "python", "args": ["-m", "bench.backend"]}}, UNCACHED)
    servers = [
        subprocess.Popen(
            [*BACKEND, "--http", str(direct_port)],
            env=env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--transport",
                "http",
                "--port",
                str(gateway_port),
                "--config",
                str(config),
            ],
            env=env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        await wait_port(direct_port, servers[0])
        await wait_port(gateway_port, servers[1])
        await asyncio.sleep(2)  # backends finish their handshake
        figures: dict[str, list[float]] = {"direct": [], "gateway": []}
        for _ in range(rounds):
            figures["direct"].append(await load(direct_port, "echo", clients, seconds))
            figures["gateway"].append(await load(gateway_port, "bench_echo", clients, seconds))
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    direct, gateway = statistics.mean(figures["direct"]), statistics.mean(figures["gateway"])
    return {"clients": clients, "direct_calls_per_s": direct, "gateway_calls_per_s": gateway, "ratio": gateway / direct}


Section = Callable[[Path], Awaitable[dict[str, Any]]]


async def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        report = {"latency": await latency(1000 if quick else 3000, directory)}
        report["throughput"] = await throughput(16, 2.0 if quick else 5.0, 1 if quick else 2, directory)
    return report


def print_report(report: dict[str, Any]) -> None:
    print("Added latency of a tool call through the gateway (stdio client -> stdio backend), sequential calls")
    for era, row in report["latency"].items():
        print(
            f"  {era}: direct p50 {row['direct_p50_ms']:.3f} ms p99 {row['direct_p99_ms']:.3f} ms | "
            f"gateway p50 {row['gateway_p50_ms']:.3f} ms p99 {row['gateway_p99_ms']:.3f} ms | "
            f"added p50 {row['added_p50_ms']:+.3f} ms p99 {row['added_p99_ms']:+.3f} ms | "
            f"ratio p50 {row['ratio_p50']:.2f}x"
        )
    row = report["throughput"]
    print(f"Streamable HTTP throughput, {row['clients']} concurrent clients (stateless 2026-07-28 requests)")
    print(
        f"  FastMCP direct {row['direct_calls_per_s']:.0f} calls/s | gateway (stdio backend) "
        f"{row['gateway_calls_per_s']:.0f} calls/s | ratio {row['ratio']:.2f}x"
    )
