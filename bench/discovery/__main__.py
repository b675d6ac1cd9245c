"""`python -m bench.discovery [--json]`: does tool search pay? Recall of `search_tools` and the tokens a
model reads, through real gateway processes.

A catalog of 341 tools (`bench.discovery.catalog`: the vendors' OpenAPI operations plus the built-in
servers' tools, served by 7 stdio backends) and 122 task sentences written for the benchmark
(`bench.discovery.tasks`). One gateway runs in `search` mode: each task's sentence goes to `search_tools`
(limit 5) over Streamable HTTP (2026-07-28, stateless); recall@1 and @5 count the tasks whose tool is first
or among the five. Another runs in `all` mode for its `tools/list`. Tokens are counted with the exact
`cl100k_base` vocabulary (`bpe-openai`; tiktoken would download it at run time) over the compact JSON a
client receives: in `all` mode the whole `tools/list` plus the call; in `search` mode the two meta-tools'
`tools/list`, one `search_tools` request and answer, and the `call_tool` request (arguments filled with a
placeholder per required parameter). CPU per search: the gateway process's utime+stime over all searches.
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

import httpx
from bpe_openai import get_encoding

from bench.discovery.catalog import catalog
from bench.discovery.tasks import TASKS
from bench.gateway import env, free_port, gateway_config, wait_port

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
LIMIT = 5
ENCODING = get_encoding("cl100k_base")


def tokens(value: Any) -> int:
    return len(ENCODING.encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False)))


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gateway:
    """A gateway process serving the benchmark's backends over HTTP."""

    def __init__(self, directory: Path, servers: dict[str, Any], mode: str) -> None:
        self.port = free_port()
        config = gateway_config(directory, servers, {"discovery": {"mode": mode}, "cache": {"enabled": False}})
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--transport",
                "http",
                "--port",
                str(self.port),
            ],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    async def ready(self) -> None:
        await wait_port(self.port, self.proc)
        while self.http.get("/ready").status_code != 200:
            await asyncio.sleep(0.1)

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": method,
        }
        if method == "tools/call":
            headers["Mcp-Name"] = params["name"] if params else ""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": ENVELOPE}}
        response = self.http.post("/mcp", json=body, headers=headers)
        response.raise_for_status()
        return response.json()["result"]

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def placeholder_arguments(tool: dict[str, Any]) -> dict[str, Any]:
    schema = tool.get("inputSchema") or {}
    return {name: "…" for name in schema.get("required", [])}


def strip_meta(result: dict[str, Any]) -> dict[str, Any]:
    """A result as a model would be shown it: without the protocol's `_meta`, `resultType` and cache hints."""
    return {k: v for k, v in result.items() if k not in ("_meta", "resultType", "ttlMs", "cacheScope")}


async def run() -> dict[str, Any]:
    tools = await catalog()
    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        directory = Path(tmp)
        file = directory / "catalog.json"
        file.write_text(json.dumps(tools))
        servers = {
            name: {"command": sys.executable, "args": ["-m", "bench.discovery.backend", str(file), name]}
            for name in tools
        }
        (directory / "all").mkdir()
        (directory / "search").mkdir()
        everything = Gateway(directory / "all", servers, "all")
        searching = Gateway(directory / "search", servers, "search")
        try:
            await everything.ready()
            await searching.ready()
            listed = strip_meta(everything.rpc("tools/list"))
            by_name = {tool["name"]: tool for tool in listed["tools"]}
            meta_listed = strip_meta(searching.rpc("tools/list"))
            searching.rpc("tools/call", {"name": "search_tools", "arguments": {"query": "warm up"}})
            hits1 = hits5 = 0
            session_tokens: list[int] = []
            direct_tokens: list[int] = []
            misses: list[tuple[str, str, list[str]]] = []
            before, began = cpu_seconds(searching.proc.pid), time.perf_counter()
            for sentence, needed in TASKS:
                request = {"name": "search_tools", "arguments": {"query": sentence, "limit": LIMIT}}
                answer = strip_meta(searching.rpc("tools/call", request))
                found = json.loads(answer["content"][0]["text"])["tools"]
                names = [tool["name"] for tool in found]
                hits1 += bool(names[:1] and names[0] in needed)
                hits5 += bool(set(names) & set(needed))
                if not set(names) & set(needed):
                    misses.append((sentence, needed[0], names[:3]))
                target = by_name[needed[0]]
                call = {
                    "name": "call_tool",
                    "arguments": {"name": target["name"], "arguments": placeholder_arguments(target)},
                }
                session_tokens.append(tokens(meta_listed) + tokens(request) + tokens(answer) + tokens(call))
                direct_tokens.append(tokens({"name": target["name"], "arguments": placeholder_arguments(target)}))
            elapsed = time.perf_counter() - began
            cpu = cpu_seconds(searching.proc.pid) - before
        finally:
            everything.stop()
            searching.stop()
    all_mode = tokens(listed) + statistics.mean(direct_tokens)
    search_mode = statistics.mean(session_tokens)
    return {
        "tools": len(listed["tools"]),
        "backends": len(tools),
        "tasks": len(TASKS),
        "recall@1": hits1 / len(TASKS),
        "recall@5": hits5 / len(TASKS),
        "tokens_tools_list_all": tokens(listed),
        "tokens_all_mode_session": round(all_mode),
        "tokens_search_session_mean": round(search_mode),
        "tokens_search_session_max": max(session_tokens),
        "token_ratio": all_mode / search_mode,
        "search_calls_per_s": len(TASKS) / elapsed,
        "search_cpu_ms_per_call": cpu / len(TASKS) * 1000,
        "misses": misses,
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"catalog: {report['tools']} tools from {report['backends']} backends; {report['tasks']} tasks")
    print(f"search_tools recall@1 {report['recall@1']:.3f}   recall@5 {report['recall@5']:.3f}")
    print(
        f"tokens (cl100k_base): tools/list in all mode {report['tokens_tools_list_all']}; "
        f"all-mode session {report['tokens_all_mode_session']}; search session mean "
        f"{report['tokens_search_session_mean']} (max {report['tokens_search_session_max']}); "
        f"{report['token_ratio']:.1f}x fewer"
    )
    print(
        f"search_tools: {report['search_calls_per_s']:.0f} calls/s sequential, "
        f"{report['search_cpu_ms_per_call']:.2f} ms gateway CPU per call"
    )
    for sentence, needed, got in report["misses"]:
        print(f"  miss: {sentence!r} needs {needed}; top 3: {', '.join(got)}")


def main() -> None:
    parser = argparse.ArgumentParser(description="tool search: recall and tokens")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()
    report = asyncio.run(run())
    print_report(report)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
