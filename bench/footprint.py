"""On the embedded defaults (`config/mcp.json`, data in a temporary directory): the resident memory of the
gateway's whole process tree once every backend is up (and again after one call to each), and the wall time
of `mcp-gateway tools`, `call` and `check`, with and without a gateway running at `--url`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.gateway import ROOT, env, free_port
from bench.procs import children, command_of, rss_bytes

CONFIG = str(ROOT / "config" / "mcp.json")
NOWHERE = "http://127.0.0.1:1/mcp"  # no gateway there: the command starts its own backends
CALLS = {  # one cheap call per backend (the vendor ones answer "not configured" without credentials)
    "ai_memory_memory_stats": {"namespace": "bench"},
    "ai_memory_recall_memory": {"query": "what did we decide about the launch", "namespace": "bench"},
    "hubspot_list_owners": {},
    "gong_list_users": {},
    "slack_list_channels": {},
}


def _env(data: Path) -> dict[str, str]:
    child = env()
    child["MCP_GATEWAY_DATA_DIR"] = str(data)
    return child


def _cli(data: Path, *args: str) -> tuple[float, int]:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", CONFIG],
        cwd=ROOT,
        env=_env(data),
        capture_output=True,
        timeout=120,
    )
    return time.perf_counter() - began, done.returncode


def _mib(pid: int) -> dict[str, float]:
    rows = {"gateway": rss_bytes(pid)}
    for child in children(pid):
        rows[command_of(child).split(" -m ")[-1].split()[0] if " -m " in command_of(child) else str(child)] = rss_bytes(
            child
        )
    out = {name: value / 2**20 for name, value in rows.items()}
    out["total"] = sum(out.values())
    return out


async def _wait_up(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the gateway exited")
            try:
                health = (await client.get(base + "/health")).json()
                if all(b["state"] == "up" for b in health["backends"].values()):
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("backends did not come up")


async def run(directory: Path) -> dict[str, Any]:
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"cli_s": {}}
    for name, args in (
        ("check", ("check",)),
        ("tools", ("tools", "--url", NOWHERE)),
        ("call", ("call", "hubspot_list_owners", "--url", NOWHERE)),
    ):
        report["cli_s"][name] = _cli(data, *args)[0]
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--transport", "http", "--port", str(port), "--config", CONFIG],
        cwd=ROOT,
        env=_env(data),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_up(base, proc)
        await asyncio.sleep(2)
        report["rss_idle_mib"] = _mib(proc.pid)
        for tool, arguments in CALLS.items():
            _cli(data, "call", tool, "--args", json.dumps(arguments), "--url", base + "/mcp")
        report["rss_after_calls_mib"] = _mib(proc.pid)
        report["cli_s"]["tools --url (running)"] = _cli(data, "tools", "--url", base + "/mcp")[0]
        report["cli_s"]["call --url (running)"] = _cli(
            data, "call", "ai_memory_memory_stats", "--args", '{"namespace": "bench"}', "--url", base + "/mcp"
        )[0]
    finally:
        proc.terminate()
        proc.wait(30)
    return report


def print_report(report: dict[str, Any]) -> None:
    for label in ("rss_idle_mib", "rss_after_calls_mib"):
        rows = report[label]
        parts = ", ".join(f"{name} {value:.0f}" for name, value in rows.items() if name != "total")
        print(
            f"Process tree RSS on embedded defaults ({label.removeprefix('rss_').removesuffix('_mib')}): "
            f"{rows['total']:.0f} MiB ({parts})"
        )
    print(
        "CLI wall time on embedded defaults: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report["cli_s"].items())
    )
