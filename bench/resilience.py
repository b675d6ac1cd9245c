"""Resilience figures, in one run: cache-hit tool calls/s over Streamable HTTP (16 clients) next to the same
call uncached and to the tool served directly by FastMCP; and how long a failing backend takes to be failed
fast by its breaker, and a recovered one to be closed again.

`python -m bench.resilience [--quick]`. Reuses the load generator of `bench.gateway`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clients import HTTPClient
from bench.gateway import BACKEND, ROOT, env, free_port, gateway_config, load, wait_port

STDIO_BENCH = {"command": "python", "args": ["-m", "bench.backend"]}


def _serve(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _gateway(config: Path, port: int) -> subprocess.Popen[bytes]:
    return _serve(
        [sys.executable, "-m", "gateway", "serve", "--transport", "http", "--port", str(port), "--config", str(config)]
    )


async def throughput(clients: int, seconds: float, rounds: int, directory: Path) -> dict[str, Any]:
    ports = {"direct": free_port(), "cached": free_port(), "uncached": free_port()}
    (directory / "cached").mkdir()
    (directory / "uncached").mkdir()
    cached = gateway_config(directory / "cached", {"bench": STDIO_BENCH})
    uncached = gateway_config(directory / "uncached", {"bench": STDIO_BENCH}, {"cache": {"enabled": False}})
    servers = {
        "direct": _serve([*BACKEND, "--http", str(ports["direct"])]),
        "cached": _gateway(cached, ports["cached"]),
        "uncached": _gateway(uncached, ports["uncached"]),
    }
    try:
        for name, server in servers.items():
            await wait_port(ports[name], server)
        await asyncio.sleep(2)  # backends finish their handshake
        figures: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(rounds):  # interleaved, so drift hits every side alike
            figures["direct"].append(await load(ports["direct"], "echo", clients, seconds))
            figures["cached"].append(await load(ports["cached"], "bench_echo", clients, seconds))
            figures["uncached"].append(await load(ports["uncached"], "bench_echo", clients, seconds))
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(10)
    mean = {name: statistics.mean(values) for name, values in figures.items()}
    return {
        "clients": clients,
        "direct_calls_per_s": mean["direct"],
        "cache_hit_calls_per_s": mean["cached"],
        "uncached_calls_per_s": mean["uncached"],
        "hit_vs_direct": mean["cached"] / mean["direct"],
        "hit_vs_uncached": mean["cached"] / mean["uncached"],
    }


async def breaker_timing(directory: Path, fail_max: int = 5, reset_timeout: float = 1.0) -> dict[str, Any]:
    """Seconds from the backend starting to fail until the gateway fails fast, and from its recovery until the
    breaker has closed (a call answered by the backend again)."""
    port = free_port()
    (directory / "breaker").mkdir()
    faulty = {"command": "python", "args": ["-m", "tests.backends.faulty"]}
    config = gateway_config(
        directory / "breaker",
        {"faulty": faulty},
        {
            "breaker": {"fail_max": fail_max, "reset_timeout": reset_timeout},
            "retry": {"attempts": 1},
            "servers": {"faulty": {"tools": {"set_mode": {"own_breaker": True, "invalidates": False}}}},
        },
    )
    server = _gateway(config, port)
    try:
        await wait_port(port, server)
        await asyncio.sleep(2)
        client = HTTPClient("127.0.0.1", port)
        await client.start()
        n = 0

        async def read() -> str:
            nonlocal n
            n += 1
            result = await client.call("faulty_get", {"key": f"k{n}"})
            return result["content"][0]["text"] if result.get("isError") else "ok"

        await client.call("faulty_set_mode", {"mode": "fail"})
        began = time.perf_counter()
        while "failing fast" not in await read():
            pass
        to_open = time.perf_counter() - began
        await client.call("faulty_set_mode", {"mode": "ok"})
        began = time.perf_counter()
        while await read() != "ok":
            await asyncio.sleep(0.005)
        to_closed = time.perf_counter() - began
        await client.close()
    finally:
        server.terminate()
        server.wait(10)
    return {
        "fail_max": fail_max,
        "reset_timeout_s": reset_timeout,
        "failing_to_fail_fast_s": to_open,
        "recovered_to_closed_s": to_closed,
    }


async def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        return {
            "throughput": await throughput(16, 2.0 if quick else 5.0, 1 if quick else 2, directory),
            "breaker": await breaker_timing(directory),
        }


def print_report(report: dict[str, Any]) -> None:
    row = report["throughput"]
    print(f"Streamable HTTP tool calls/s, {row['clients']} concurrent clients, same arguments every call")
    print(
        f"  FastMCP direct {row['direct_calls_per_s']:.0f} | gateway uncached {row['uncached_calls_per_s']:.0f} | "
        f"gateway cache hit {row['cache_hit_calls_per_s']:.0f} | hit vs direct {row['hit_vs_direct']:.2f}x | "
        f"hit vs uncached {row['hit_vs_uncached']:.2f}x"
    )
    row = report["breaker"]
    print(
        f"Breaker (fail_max {row['fail_max']}, reset_timeout {row['reset_timeout_s']:g} s): backend failing -> "
        f"failing fast {row['failing_to_fail_fast_s'] * 1000:.1f} ms | recovered -> closed "
        f"{row['recovered_to_closed_s'] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run(quick=args.quick))
    print_report(report)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
