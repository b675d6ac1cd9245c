"""`mcp-gateway`: serve, check, list tools, call a tool."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.hub import Hub

DEFAULT_CONFIG = "config/mcp.json"
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-gateway", description="One MCP endpoint for every backend server.")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
        return sub

    serve = with_config(commands.add_parser("serve", help="serve MCP over stdio or HTTP"))
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    with_config(commands.add_parser("check", help="start every backend and report its state"))
    with_config(commands.add_parser("tools", help="list every exposed tool"))
    call = with_config(commands.add_parser("call", help="call one tool and print its result"))
    call.add_argument("tool")
    call.add_argument("--args", default="{}", help="the arguments as a JSON object")
    return parser


def _setup_logging() -> str:
    from gateway import logs

    return logs.setup()


@asynccontextmanager
async def running_hub(config: GatewayConfig) -> AsyncIterator[Hub]:
    """Start every backend, yield the hub, stop everything on exit."""
    hub = Hub(config)
    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        try:
            yield hub
        finally:
            group.cancel_scope.cancel()


async def _check(config: GatewayConfig) -> int:
    async with running_hub(config) as hub:
        rows = [("SERVER", "TRANSPORT", "STATE", "TOOLS", "START-UP MS", "ERROR")]
        for backend in hub.backends:
            startup = f"{backend.startup_ms:.0f}" if backend.startup_ms is not None else "-"
            rows.append(
                (backend.name, backend.transport, backend.state, str(len(backend.tools)), startup,
                 backend.last_error or "")
            )
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5])
        return 0 if hub.healthy else 1


async def _tools(config: GatewayConfig) -> int:
    async with running_hub(config) as hub:
        for tool in hub.catalog.tools:
            description = (tool.get("description") or "").strip().splitlines()
            print(f"{tool['name']}\t{description[0] if description else ''}")
        down = [backend.name for backend in hub.backends if backend.state != "up"]
        if down:
            print(f"backends down: {', '.join(down)}", file=sys.stderr)
        return 0


async def _call(config: GatewayConfig, tool: str, arguments: dict[str, Any]) -> int:
    async with running_hub(config) as hub:
        result = await hub.call_tool(tool, arguments)
        for block in result.get("content", []):
            if block.get("type") == "text":
                print(block["text"])
            else:
                print(json.dumps(block))
        if result.get("structuredContent") is not None and not result.get("content"):
            print(json.dumps(result["structuredContent"], indent=2))
        return 1 if result.get("isError") else 0


async def _serve(config: GatewayConfig, transport: str, host: str, port: int, log_format: str) -> int:
    from gateway import telemetry
    from gateway.serve import serve

    telemetry.configure()
    try:
        await serve(config, transport, host, port, json_logs=log_format == "json")
    finally:
        telemetry.shutdown()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    log_format = _setup_logging()
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"mcp-gateway: config error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if args.command == "serve":
        code = anyio.run(_serve, config, args.transport, args.host, args.port, log_format)
    elif args.command == "check":
        code = anyio.run(_check, config)
    elif args.command == "tools":
        code = anyio.run(_tools, config)
    else:
        try:
            arguments = json.loads(args.args)
        except json.JSONDecodeError as error:
            print(f"mcp-gateway: --args is not valid JSON: {error.msg}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        if not isinstance(arguments, dict):
            print("mcp-gateway: --args must be a JSON object", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        code = anyio.run(_call, config, args.tool, arguments)
    sys.exit(code)
