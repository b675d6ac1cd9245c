"""`mcp-gateway`: serve, check, list tools, call a tool."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from gateway.auth.keys import auth_enabled, hash_token, is_loopback
from gateway.config.loader import ConfigError, GatewayConfig, load_config
from gateway.guard.audit import setup_audit
from gateway.ops import logs
from gateway.ops.logs import BackendStderr
from gateway.routing.hub import Hub
from gateway.serve import Security, load_security

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
    serve.add_argument("--profile", help="stdio: serve only this gateway.profiles entry (HTTP: /mcp/NAME)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow binding a non-loopback address without gateway.auth (anyone who can reach it may call every tool)",
    )
    hash_token = commands.add_parser("hash-token", help="make a client API token and the hash to put in config")
    hash_token.add_argument("--stdin", action="store_true", help="hash a token read from stdin instead of a new one")
    with_config(commands.add_parser("check", help="start every backend and report its state"))
    with_config(commands.add_parser("tools", help="list every exposed tool"))
    call = with_config(commands.add_parser("call", help="call one tool and print its result"))
    call.add_argument("tool")
    call.add_argument("--args", default="{}", help="the arguments as a JSON object")
    return parser


@asynccontextmanager
async def running_hub(config: GatewayConfig, stderr: BackendStderr) -> AsyncIterator[Hub]:
    """Start every backend, yield the hub, stop everything on exit."""
    hub = Hub(config, stderr=stderr)
    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        try:
            yield hub
        finally:
            group.cancel_scope.cancel()


async def _check(config: GatewayConfig, security: Security, stderr: BackendStderr) -> int:
    async with running_hub(config, stderr) as hub:
        rows = [("SERVER", "TRANSPORT", "STATE", "TOOLS", "START-UP MS", "ERROR")]
        for backend in hub.backends:
            startup = f"{backend.startup_ms:.0f}" if backend.startup_ms is not None else "-"
            rows.append(
                (
                    backend.name,
                    backend.transport,
                    backend.state,
                    str(len(backend.tools)),
                    startup,
                    security.redactor(backend.last_error or ""),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5])
        return 0 if hub.healthy else 1


async def _tools(config: GatewayConfig, stderr: BackendStderr) -> int:
    async with running_hub(config, stderr) as hub:
        for tool in hub.catalog.tools:
            description = (tool.get("description") or "").strip().splitlines()
            print(f"{tool['name']}\t{description[0] if description else ''}")
        down = [backend.name for backend in hub.backends if backend.state != "up"]
        if down:
            print(f"backends down: {', '.join(down)}", file=sys.stderr)
        return 0


async def _call(config: GatewayConfig, tool: str, arguments: dict[str, Any], stderr: BackendStderr) -> int:
    async with running_hub(config, stderr) as hub:
        result = await hub.call_tool(tool, arguments)
        for block in result.get("content", []):
            if block.get("type") == "text":
                print(block["text"])
            else:
                print(json.dumps(block))
        if result.get("structuredContent") is not None and not result.get("content"):
            print(json.dumps(result["structuredContent"], indent=2))
        return 1 if result.get("isError") else 0


async def _serve(
    config: GatewayConfig,
    transport: str,
    host: str,
    port: int,
    security: Security,
    stderr: BackendStderr,
    profile: str | None = None,
    config_file: str | None = None,
) -> int:
    from gateway.ops import tracing
    from gateway.serve import serve

    tracer = tracing.configure(os.environ)
    try:
        await serve(
            config,
            transport,
            host,
            port,
            security,
            json_logs=stderr.log_format == "json",
            tracer=tracer or tracing.NO_TRACING,
            stderr=stderr,
            profile=profile,
            config_file=config_file,
        )
    finally:
        if tracer is not None:
            tracer.shutdown()
    return 0


MIN_TOKEN_LENGTH = 32


def _hash_token(from_stdin: bool) -> int:
    """Print a new high-entropy token (or hash one from stdin) and the config entry for it."""
    if from_stdin:
        token = sys.stdin.readline().strip()
        if len(token) < MIN_TOKEN_LENGTH:
            print(
                f"mcp-gateway: a token needs at least {MIN_TOKEN_LENGTH} characters of randomness "
                "(run `mcp-gateway hash-token` without --stdin to make one)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        print(hash_token(token))
        return 0
    import secrets

    token = "mgw_" + secrets.token_urlsafe(32)  # 256 random bits
    print(f"token (give it to the client; it is not stored anywhere): {token}")
    print(f"token_sha256 (put it in config):                          {hash_token(token)}")
    print(f'config: "gateway": {{"auth": {{"clients": {{"NAME": {{"token_sha256": "{hash_token(token)}"}}}}}}}}')
    return 0


def _bind_refusal(host: str, config: GatewayConfig, insecure: bool) -> str | None:
    if is_loopback(host) or insecure or auth_enabled(config.gateway.auth):
        return None
    return (
        f"refusing to serve HTTP on {host} without authentication: anyone who can reach it could call every tool. "
        "Add clients under gateway.auth in the config (make a token with `mcp-gateway hash-token`; "
        "see docs/security.md), bind 127.0.0.1, or pass --insecure-no-auth if something in front of the "
        "gateway authenticates."
    )


def _profile_refusal(profile: str, transport: str, config: GatewayConfig) -> str | None:
    if transport != "stdio":
        return f"--profile is for --transport stdio; over HTTP profile {profile!r} is served at /mcp/{profile}"
    if profile not in config.gateway.profiles:
        known = ", ".join(sorted(config.gateway.profiles)) or "none configured"
        return f"unknown profile {profile!r} (gateway.profiles: {known})"
    return None


def _raw_servers(path: str) -> Any:
    try:
        return json.loads(open(path, encoding="utf-8").read()).get("mcpServers")
    except Exception:
        return None


def _loop_options() -> dict[str, Any]:
    """Serve on uvloop where it is installed (it is a dependency; MCP_GATEWAY_UVLOOP=0 turns it off)."""
    if os.environ.get("MCP_GATEWAY_UVLOOP", "1") in ("0", "false", "no"):
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "hash-token":
        sys.exit(_hash_token(args.stdin))
    log_format = logs.setup(os.environ)
    try:
        config = load_config(args.config, os.environ)
        security = load_security(config, args.config, os.environ, _raw_servers(args.config))
    except ConfigError as error:
        print(f"mcp-gateway: config error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    logs.install_log_redaction(security.redactor)
    setup_audit(security.audit, config.gateway.audit)
    stderr = logs.BackendStderr(log_format, security.redactor)  # stdio backends' stderr, scrubbed
    if args.command == "serve":
        if args.transport == "http" and (refusal := _bind_refusal(args.host, config, args.insecure_no_auth)):
            print(f"mcp-gateway: {refusal}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        if args.profile is not None and (refusal := _profile_refusal(args.profile, args.transport, config)):
            print(f"mcp-gateway: {refusal}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        refused: BaseException | None = None
        try:
            code = anyio.run(
                _serve,
                config,
                args.transport,
                args.host,
                args.port,
                security,
                stderr,
                args.profile,
                args.config,
                backend_options=_loop_options(),
            )
        except* ConfigError as group:  # found once the backends list their tools (a renamed tool's clash)
            refused = group.exceptions[0]
            while isinstance(refused, BaseExceptionGroup):  # task groups nest: the first leaf
                refused = refused.exceptions[0]
        if isinstance(refused, ConfigError):
            print(f"mcp-gateway: config error: {args.config}: {refused.path}: {refused.problem}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
    elif args.command == "check":
        code = anyio.run(_check, config, security, stderr)
    elif args.command == "tools":
        code = anyio.run(_tools, config, stderr)
    else:
        try:
            arguments = json.loads(args.args)
        except json.JSONDecodeError as error:
            print(f"mcp-gateway: --args is not valid JSON: {error.msg}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        if not isinstance(arguments, dict):
            print("mcp-gateway: --args must be a JSON object", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        code = anyio.run(_call, config, args.tool, arguments, stderr)
    sys.exit(code)
