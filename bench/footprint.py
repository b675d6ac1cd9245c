"""On the embedded defaults (`config/mcp.json`, data in a temporary directory): the resident memory of the
gateway's whole process tree at idle once every backend is up, again once ai_memory has stored and recalled a
memory (its embedding model loads on that first use and stays), and after one call to every backend; and the
wall time (and CPU time) of `mcp-gateway tools`, `call` and `check`, with and without a gateway at `--url`."""

from __future__ import annotations

import asyncio
import json
import resource
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
RSS_TARGET_MIB = 350
CLI_TARGET_S = 2.0
FIRST_USE = {  # ai_memory's first store and recall: the model loads here ("indexed" waits for the embedding)
    "ai_memory_store_memory": {"content": "We decided to launch on a Tuesday, after the review.", "namespace": "bench"},
    "ai_memory_recall_memory": {
        "query": "what did we decide about the launch",
        "namespace": "bench",
        "consistency": "indexed",
    },
}
CALLS = {  # then one cheap call per backend (the vendor ones answer "not configured" without credentials)
    "ai_memory_memory_stats": {"namespace": "bench"},
    "hubspot_list_owners": {},
    "gong_list_users": {},
    "slack_list_channels": {},
}


def _env(data: Path) -> dict[str, str]:
    child = env()
    child["MCP_GATEWAY_DATA_DIR"] = str(data)
    return child


def _cli(data: Path, *args: str) -> tuple[float, float, int]:
    """Run one `mcp-gateway` command: (wall seconds, CPU seconds of it and its children, exit code)."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", CONFIG],
        cwd=ROOT,
        env=_env(data),
        capture_output=True,
        timeout=120,
    )
    wall = time.perf_counter() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return wall, cpu, done.returncode


def _name(pid: int) -> str:
    command = command_of(pid)
    return command.split(" -m ")[-1].split()[0] if " -m " in command else str(pid)


def _mib(pid: int) -> dict[str, float]:
    rows = {"gateway": rss_bytes(pid)} | {_name(child): rss_bytes(child) for child in children(pid)}
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
    report: dict[str, Any] = {"cli_s": {}, "cli_cpu_s": {}}

    def timed(name: str, *args: str) -> None:
        report["cli_s"][name], report["cli_cpu_s"][name], _ = _cli(data, *args)

    for name, args in (
        ("check", ("check",)),
        ("tools", ("tools", "--url", NOWHERE)),
        ("call", ("call", "hubspot_list_owners", "--url", NOWHERE)),
        ("call ai_memory", ("call", "ai_memory_memory_stats", "--args", '{"namespace": "bench"}', "--url", NOWHERE)),
    ):
        timed(name, *args)
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
        for calls, label in ((FIRST_USE, "rss_model_loaded_mib"), (CALLS, "rss_after_calls_mib")):
            for tool, arguments in calls.items():
                _cli(data, "call", tool, "--args", json.dumps(arguments), "--url", base + "/mcp")
            await asyncio.sleep(1)
            report[label] = _mib(proc.pid)
        timed("tools --url (running)", "tools", "--url", base + "/mcp")
        timed(
            "call --url (running)",
            "call",
            "ai_memory_memory_stats",
            "--args",
            '{"namespace": "bench"}',
            "--url",
            base + "/mcp",
        )
    finally:
        proc.terminate()
        proc.wait(30)
    return report


LABELS = {
    "rss_idle_mib": "idle, every backend up",
    "rss_model_loaded_mib": "after ai_memory's first store + recall (model loaded)",
    "rss_after_calls_mib": "after one call to every backend",
}


def _verdict(met: bool) -> str:
    return "meets" if met else "misses"


def print_report(report: dict[str, Any]) -> None:
    for label, meaning in LABELS.items():
        rows = report[label]
        parts = ", ".join(f"{name} {value:.0f}" for name, value in rows.items() if name != "total")
        print(
            f"Process tree RSS on embedded defaults, {meaning}: {rows['total']:.0f} MiB ({parts}): "
            f"{_verdict(rows['total'] <= RSS_TARGET_MIB)} <= {RSS_TARGET_MIB} MiB"
        )
    print(f"CLI on embedded defaults (wall s / CPU s of the command and its children; target <= {CLI_TARGET_S} s):")
    for name, seconds in report["cli_s"].items():
        cpu = report["cli_cpu_s"][name]
        print(f"  {name:<24} {seconds:5.2f} s wall  {cpu:5.2f} s CPU  {_verdict(seconds <= CLI_TARGET_S)}")
