"""Scale-out figures, in one run: tool calls/s of 1, 2 and 3 gateway replicas behind a round-robin client
(every client connection rotates over the replicas call by call), with the backend's read-only tool cached
(L1 + L2 on one Redis shared by the replicas) and uncached; and what the Redis round trip costs per call (a
cache hit from L2, on a gateway whose L1 holds a single entry, next to a hit from L1).

`python -m bench.replicas [--quick] [--json]`. Ratios are against the 1-replica figure of the same run.
Figures and why they do not scale linearly on a small machine: docs/operations.md, "Scaling".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clients import HTTPClient
from bench.gateway import ROOT, env, free_port, gateway_config, pct, wait_port
from tests.helpers.redis_proc import RedisProcess

STDIO_BENCH = {"command": "python", "args": ["-m", "bench.backend"]}


def _gateway(config: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--transport", "http", "--port", str(port), "--config", str(config)],
        env=env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def round_robin(ports: list[int], clients: int, seconds: float, keys: int = 1) -> float:
    """Calls/s from `clients` workers; each holds a keep-alive connection to every replica and sends its calls
    to them in turn. `keys` distinct arguments, cycled."""
    workers = [[HTTPClient("127.0.0.1", port) for port in ports] for _ in range(clients)]
    for connections in workers:
        for connection in connections:
            await connection.start()
            await connection.call("bench_echo", {"text": "warm"})
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(connections: list[HTTPClient], offset: int) -> None:
        nonlocal done
        n = offset
        while time.perf_counter() < stop_at:
            text = f"k{n % keys}" if keys > 1 else "hello"
            result = await connections[n % len(connections)].call("bench_echo", {"text": text})
            assert result["content"][0]["text"] == text, result
            n += 1
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(connections, i) for i, connections in enumerate(workers)))
    elapsed = time.perf_counter() - began
    for connections in workers:
        for connection in connections:
            await connection.close()
    return done / elapsed


async def scaling(redis_url: str, clients: int, seconds: float, rounds: int, directory: Path) -> dict[str, Any]:
    configs = {
        "cached": gateway_config(directory / "cached", {"bench": STDIO_BENCH}, {"redis_url": redis_url}),
        "uncached": gateway_config(
            directory / "uncached", {"bench": STDIO_BENCH}, {"redis_url": redis_url, "cache": {"enabled": False}}
        ),
    }
    ports = {mode: [free_port() for _ in range(3)] for mode in configs}
    servers = [_gateway(configs[mode], port) for mode in configs for port in ports[mode]]
    try:
        for port, server in zip([p for mode in configs for p in ports[mode]], servers, strict=True):
            await wait_port(port, server)
        await asyncio.sleep(2)  # backends finish their handshake
        figures: dict[str, dict[int, list[float]]] = {mode: {1: [], 2: [], 3: []} for mode in configs}
        for _ in range(rounds):  # interleaved, so drift hits every figure alike
            for mode in configs:
                for n in (1, 2, 3):
                    figures[mode][n].append(await round_robin(ports[mode][:n], clients, seconds))
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    report: dict[str, Any] = {"clients": clients}
    for mode, by_n in figures.items():
        base = statistics.mean(by_n[1])
        report[mode] = {
            n: {"calls_per_s": statistics.mean(v), "vs_1": statistics.mean(v) / base} for n, v in by_n.items()
        }
    return report


async def sequential(port: int, calls: int, keys: int) -> list[float]:
    client = HTTPClient("127.0.0.1", port)
    await client.start()
    for n in range(keys * 2):  # fill the caches
        await client.call("bench_echo", {"text": f"k{n % keys}"})
    samples = []
    for n in range(calls):
        began = time.perf_counter()
        await client.call("bench_echo", {"text": f"k{n % keys}"})
        samples.append((time.perf_counter() - began) * 1000)
    await client.close()
    return samples


async def l2_cost(redis_url: str, calls: int, clients: int, seconds: float, directory: Path) -> dict[str, Any]:
    """Cache hits from L1 vs from L2 (L1 of one entry, 64 keys cycled: every call misses L1, hits Redis)."""
    configs = {
        "l1": gateway_config(directory / "l1", {"bench": STDIO_BENCH}, {"redis_url": redis_url}),
        "l2": gateway_config(
            directory / "l2", {"bench": STDIO_BENCH}, {"redis_url": redis_url, "cache": {"max_entries": 1}}
        ),
    }
    ports = {name: free_port() for name in configs}
    servers = {name: _gateway(config, ports[name]) for name, config in configs.items()}
    try:
        for name, server in servers.items():
            await wait_port(ports[name], server)
        await asyncio.sleep(2)
        samples: dict[str, list[float]] = {"l1": [], "l2": []}
        for _ in range(max(1, calls // 500)):  # interleaved blocks
            for name in configs:
                samples[name] += await sequential(ports[name], 500, 64)
        rates = {name: await round_robin([ports[name]], clients, seconds, keys=64) for name in configs}
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(10)
    l1, l2 = statistics.median(samples["l1"]), statistics.median(samples["l2"])
    return {
        "l1_p50_ms": l1,
        "l2_p50_ms": l2,
        "l1_p99_ms": pct(samples["l1"], 99),
        "l2_p99_ms": pct(samples["l2"], 99),
        "redis_round_trip_ms": l2 - l1,
        "l1_calls_per_s": rates["l1"],
        "l2_calls_per_s": rates["l2"],
        "clients": clients,
    }


async def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name in ("cached", "uncached", "l1", "l2", "redis"):
            (directory / name).mkdir()
        redis = RedisProcess(directory / "redis")
        redis.start()
        try:
            seconds, rounds = (2.0, 1) if quick else (4.0, 2)
            return {
                "cpus": os.cpu_count(),
                "scaling": await scaling(redis.url, 16, seconds, rounds, directory),
                "l2": await l2_cost(redis.url, 1000 if quick else 3000, 16, seconds, directory),
            }
        finally:
            redis.kill()


def print_report(report: dict[str, Any]) -> None:
    scaling = report["scaling"]
    print(
        f"Round-robin over N replicas, {scaling['clients']} concurrent clients, {report['cpus']} CPUs "
        "(client, replicas, backends and Redis all on this machine)"
    )
    for mode in ("cached", "uncached"):
        row = scaling[mode]
        figures = " | ".join(
            f"{n} replica{'s' if n > 1 else ''} {row[n]['calls_per_s']:.0f}/s ({row[n]['vs_1']:.2f}x)"
            for n in (1, 2, 3)
        )
        print(f"  {mode:8} {figures}")
    row = report["l2"]
    print(
        f"Cache hit from L2 (Redis) vs L1 (in-process), sequential: p50 {row['l2_p50_ms']:.3f} vs "
        f"{row['l1_p50_ms']:.3f} ms (Redis round trip +{row['redis_round_trip_ms']:.3f} ms), p99 "
        f"{row['l2_p99_ms']:.3f} vs {row['l1_p99_ms']:.3f} ms; {row['clients']} clients: "
        f"{row['l2_calls_per_s']:.0f} vs {row['l1_calls_per_s']:.0f} calls/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()
    report = asyncio.run(run(quick=args.quick))
    print_report(report)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
