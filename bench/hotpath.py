"""Streamable HTTP figures of the hot path, each next to the serving process's CPU time per call.

16 keep-alive connections (`bench.load`) send stateless 2026-07-28 `tools/call` POSTs, each with one of several
distinct arguments, to: the bare ASGI echo (`bench.echo_asgi`, the Python limit on this machine); the gateway
answering a cached read-only tool from L1; the same from Redis (L2: an L1 of one entry, 64 keys cycled); the
gateway forwarding uncached to a stdio backend (FastMCP's, `bench.backend`, and one with no framework that keeps
up with the load, `bench.raw_backend`); FastMCP serving the tool directly; and, when installed,
sparfenyuk's `mcp-proxy` and FastMCP's `create_proxy` in front of the same backend.

CPU per call is the serving process's utime + stime (bench.procs) over the measured run divided by the calls
it answered: a figure that holds on a shared machine, where calls/s swing with the neighbours' load.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gateway import BACKEND, ROOT, UNCACHED, env, free_port, gateway_config, wait_port
from bench.load import drive, generator
from bench.procs import CpuMeter

STDIO_BENCH = {"command": "python", "args": ["-m", "bench.backend"]}
STDIO_RAW = {"command": "python", "args": ["-m", "bench.raw_backend"]}
GATEWAYS = ("l1", "l2", "uncached", "uncached_raw")


async def wait_ready(port: int, timeout: float = 120) -> None:
    """Until the gateway's `/ready` answers 200 (its backends are up): on a loaded machine a fixed pause
    before the warm-up was not always enough, and the target was skipped."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = await reader.readline()
        writer.close()
        if b" 200 " in status:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the gateway on {port} was not ready within {timeout:g} s")


@dataclass
class Target:
    """One server under load: how to start it, which tool to call, how many distinct arguments."""

    key: str
    label: str
    argv: list[str]
    port: int
    tool: str
    variants: int = 16
    generator: str | None = None  # force one (FastMCP's own server stalls wrk's pipelined keep-alive)
    protocol: str = "2026-07-28"  # the era of the stateless requests (an older one for a peer on an older SDK)
    note: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def _gateway_argv(config: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--transport",
        "http",
        "--port",
        str(port),
        "--config",
        str(config),
    ]


def targets(directory: Path, redis_url: str | None) -> list[Target]:
    """Every target of the table, in its order; the optional peers only when they are installed."""
    ports = iter(free_port() for _ in range(9))
    cached = gateway_config(directory / "l1", {"bench": STDIO_BENCH})
    uncached = gateway_config(directory / "uncached", {"bench": STDIO_BENCH}, UNCACHED)
    uncached_raw = gateway_config(directory / "uncached_raw", {"bench": STDIO_RAW}, UNCACHED)
    found = [
        Target(
            "echo",
            "bare ASGI JSON-RPC echo (uvicorn + uvloop + httptools): the Python limit",
            [sys.executable, "-m", "bench.echo_asgi", str(port := next(ports))],
            port,
            "echo",
        ),
        Target(
            "l1",
            "the gateway, cached read-only tool (L1 hit)",
            _gateway_argv(cached, port := next(ports)),
            port,
            "bench_echo",
        ),
    ]
    if redis_url is not None:
        l2 = gateway_config(
            directory / "l2", {"bench": STDIO_BENCH}, {"redis_url": redis_url, "cache": {"max_entries": 1}}
        )
        found.append(
            Target(
                "l2",
                "the gateway, cached, Redis L2 hit (L1 of one entry, 64 keys)",
                _gateway_argv(l2, port := next(ports)),
                port,
                "bench_echo",
                variants=64,
            )
        )
    found += [
        Target(
            "uncached",
            "the gateway, uncached, stdio backend behind it",
            _gateway_argv(uncached, port := next(ports)),
            port,
            "bench_echo",
        ),
        Target(
            "uncached_raw",
            "the gateway, uncached, a framework-free stdio backend that keeps up (`bench.raw_backend`)",
            _gateway_argv(uncached_raw, port := next(ports)),
            port,
            "bench_echo",
        ),
        Target(
            "fastmcp",
            "FastMCP serving the tool directly",
            [*BACKEND, "--http", str(port := next(ports))],
            port,
            "echo",
            generator="python",
        ),
    ]
    if shutil.which("mcp-proxy"):
        found.append(
            Target(
                "mcp_proxy",
                "sparfenyuk/mcp-proxy, same backend (stateless 2025-11-25: its SDK, mcp 1.x, predates 2026-07-28)",
                ["mcp-proxy", "--stateless", "--port", str(port := next(ports)), "--", *BACKEND],
                port,
                "echo",
                protocol="2025-11-25",
            )
        )
    found.append(
        Target(
            "create_proxy",
            "FastMCP `create_proxy` over a connected client, same backend",
            [sys.executable, "-m", "bench.fastmcp_proxy", str(port := next(ports))],
            port,
            "echo",
        )
    )
    return found


async def measure(target: Target, seconds: float, rounds: int) -> dict[str, Any]:
    """Start the target, warm it (fills the cache), then `rounds` measured runs: calls/s and CPU µs per call."""
    proc = subprocess.Popen(target.argv, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = target.port
        await wait_port(port, proc)
        if target.key in GATEWAYS:
            await wait_ready(port)  # the gateway serves at once; its backend joins the catalog when it is up
        else:
            await asyncio.sleep(1.5 if target.key != "echo" else 0.3)  # backends finish their handshake
        for _ in range(30):  # a busy machine may take a while to bring the backends up: warm until answered
            warm = await drive(
                port, target.tool, variants=target.variants, seconds=1, using=target.generator, protocol=target.protocol
            )
            if warm.requests:
                break
        if warm.requests == 0 or warm.failures > warm.requests // 2:
            return {
                "skipped": f"its answers failed during warm-up ({warm.failures} of {warm.requests}): "
                f"it does not serve stateless {target.protocol} requests"
            }
        rates, cpu, failures = [], [], 0
        for _ in range(rounds):
            with CpuMeter(proc.pid) as meter:
                load = await drive(
                    port,
                    target.tool,
                    variants=target.variants,
                    seconds=seconds,
                    using=target.generator,
                    protocol=target.protocol,
                )
            rates.append(load.rate)
            cpu.append(meter.seconds / max(1, load.requests) * 1e6)
            failures += load.failures
        return {
            "calls_per_s": statistics.median(rates),
            "cpu_us_per_call": statistics.median(cpu),
            "failures": failures,
            "generator": load.generator,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def run(
    directory: Path, redis_url: str | None, seconds: float, rounds: int, only: Sequence[str] | None = None
) -> dict[str, Any]:
    report: dict[str, Any] = {"generator": generator(), "targets": {}}
    for target in targets(directory, redis_url):
        if only and target.key not in only:
            continue
        report["targets"][target.key] = {"label": target.label, **await measure(target, seconds, rounds)}
    if not shutil.which("mcp-proxy"):
        report["targets"]["mcp_proxy"] = {
            "label": "sparfenyuk/mcp-proxy, same backend",
            "skipped": "not installed (pip install mcp-proxy)",
        }
    if redis_url is None:
        report["targets"]["l2"] = {"label": "the gateway, cached, Redis L2 hit", "skipped": "no redis-server"}
    return report


def print_report(report: dict[str, Any]) -> None:
    rows = report["targets"]
    echo = rows.get("echo", {}).get("calls_per_s")
    l1_cpu = rows.get("l1", {}).get("cpu_us_per_call")
    print(
        f"Streamable HTTP, 16 connections ({report['generator']}), stateless 2026-07-28 tools/call, "
        "every response checked"
    )
    print("| target | calls/s | CPU µs per call | vs echo |")
    print("|---|---|---|---|")
    for row in rows.values():
        if "skipped" in row:
            print(f"| {row['label']} | skipped: {row['skipped']} | | |")
            continue
        ratio = f"{row['calls_per_s'] / echo:.2f}x" if echo else ""
        failed = f" ({row['failures']} failed)" if row["failures"] else ""
        print(f"| {row['label']} | {row['calls_per_s']:,.0f}{failed} | {row['cpu_us_per_call']:,.0f} | {ratio} |")
    if l1_cpu and "cpu_us_per_call" in rows.get("l2", {}):
        print(f"L2 hit / L1 hit CPU per call: {rows['l2']['cpu_us_per_call'] / l1_cpu:.2f}x")
