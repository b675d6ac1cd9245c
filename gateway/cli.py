"""`mcp-gateway`: serve, check, list tools, call a tool.

`tools` and `call` ask the gateway running at `--url` (default http://127.0.0.1:8080/mcp) when one answers
there, and otherwise start only the backend(s) they need; `check` starts every backend at once and prints
each as it comes up. The gateway's stack is imported only by the commands that run it, so asking a running
gateway costs no more than an HTTP client.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from gateway.backends.spawn import Child
    from gateway.config.loader import GatewayConfig
    from gateway.ops.logs import BackendStderr
    from gateway.routing.hub import Hub
    from gateway.serve import Security

DEFAULT_CONFIG = "config/mcp.json"
DEFAULT_URL = "http://127.0.0.1:8080/mcp"
TOKEN_ENV = "MCP_GATEWAY_TOKEN"
EXIT_CONFIG = 2
Spawned = dict[str, "Child"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-gateway", description="One MCP endpoint for every backend server.")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
        return sub

    def with_url(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--url",
            default=DEFAULT_URL,
            help=f"a running gateway to ask first (default {DEFAULT_URL}; bearer token from ${TOKEN_ENV}); "
            "when none answers, the backends are started here",
        )
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
    with_url(with_config(commands.add_parser("tools", help="list every exposed tool")))
    call = with_url(with_config(commands.add_parser("call", help="call one tool and print its result")))
    call.add_argument("tool")
    call.add_argument("--args", default="{}", help="the arguments as a JSON object")
    return parser


def _hub(config: GatewayConfig, stderr: BackendStderr, exit_grace: float, spawned: Spawned) -> Hub:
    """The hub of `config`, its stdio backends taking the children `spawned` started for them."""
    from gateway.routing.hub import Hub

    hub = Hub(config, stderr=stderr)
    for backend in hub.backends:
        backend.exit_grace = exit_grace
        if backend.name in spawned:
            backend.adopt(spawned[backend.name])
    return hub


@asynccontextmanager
async def running_hub(
    config: GatewayConfig, stderr: BackendStderr, exit_grace: float = 2.0, spawned: Spawned | None = None
) -> AsyncIterator[Hub]:
    """Start every backend of `config` at once, yield the hub once each is up or has failed, stop them on exit
    (a stdio child gets `exit_grace` seconds to exit on its own before it is terminated). A stdio backend
    with a child in `spawned` (from `spawn_children`) takes that one instead of starting its own."""
    hub = _hub(config, stderr, exit_grace, spawned or {})
    async with anyio.create_task_group() as group:
        await group.start(hub.run)
        try:
            yield hub
        finally:
            group.cancel_scope.cancel()


def needed_by(config: GatewayConfig, tool: str) -> GatewayConfig:
    """`config` with only the servers that may expose `tool` (by their namespace prefix); all when none does."""
    separator = config.gateway.name_separator
    wanted = {
        name: server
        for name, server in config.enabled_servers.items()
        if tool.startswith(f"{name if server.namespace is None else server.namespace}{separator}")
        or server.namespace == ""
    }
    if not wanted:
        return config
    return config.model_copy(update={"mcp_servers": wanted})


async def spawn_children(config: GatewayConfig, stderr: BackendStderr) -> Spawned:
    """Start the stdio children of `config` now, with nothing of the MCP SDK imported: each imports its own
    stack on the other core while this process imports the gateway's (their first start then adopts them).
    A child that cannot be started is left to its backend, whose own start reports why."""
    from gateway.backends import spawn

    return await spawn.start_all(config, stderr)


async def _reap(spawned: Spawned) -> None:
    """Stop the children no backend adopted (the command ended before their backend started)."""
    from gateway.backends import spawn

    await spawn.reap(spawned)


# ------------------------------------------------------------------ a running gateway


class NoGateway(Exception):
    """Nothing that speaks MCP answers at the URL."""


async def _ask(url: str, method: str, params: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """One stateless (2026-07-28) request to the gateway at `url`; its JSON-RPC result.

    `NoGateway` when nothing answers there like an MCP server; `RuntimeError` for a refusal (e.g. 401)."""
    await _probe(url)
    import httpx

    version = "2026-07-28"
    meta = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-gateway-cli", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    if token := os.environ.get(TOKEN_ENV):
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=1)) as client:
            response = await client.post(url, json=body, headers=headers)
    except httpx.TransportError as error:
        raise NoGateway(str(error)) from None
    if response.status_code in (401, 403):
        raise RuntimeError(
            f"the gateway at {url} refused the request ({response.status_code}): "
            f"set {TOKEN_ENV} to a client token, or pass --url of another gateway"
        )
    try:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
            message = next(event for event in events if event.get("id") == 1)
        else:
            message = response.json()
    except (ValueError, StopIteration):
        raise NoGateway(f"{url} answered HTTP {response.status_code} without a JSON-RPC answer") from None
    if not isinstance(message, dict) or ("result" not in message and "error" not in message):
        raise NoGateway(f"{url} answered HTTP {response.status_code} without a JSON-RPC answer")
    if "error" in message:
        raise RuntimeError(f"the gateway at {url} answered: {message['error'].get('message')}")
    result: dict[str, Any] = message["result"]
    return result


async def _probe(url: str) -> None:
    """`NoGateway` at once when nothing listens at `url`'s address, before an HTTP client is imported (the
    usual case of a command run without a gateway). Skipped when a proxy is configured: then the client's
    connection goes there, not to `url`'s address."""
    import asyncio
    from urllib.parse import urlsplit

    if any(key.lower() in ("http_proxy", "https_proxy", "all_proxy") for key in os.environ):
        return
    parts = urlsplit(url)
    if parts.hostname is None:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return  # the client says what is wrong with it
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout=1)
    except (OSError, TimeoutError) as error:
        raise NoGateway(str(error) or type(error).__name__) from None
    writer.close()


async def _remote_tools(url: str) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    while True:
        result = await _ask(url, "tools/list", params)
        tools.extend(result.get("tools", []))
        if not result.get("nextCursor"):
            return tools
        params = {"cursor": result["nextCursor"]}


# ------------------------------------------------------------------ the commands


def _print_tools(tools: list[dict[str, Any]]) -> None:
    for tool in tools:
        description = (tool.get("description") or "").strip().splitlines()
        print(f"{tool['name']}\t{description[0] if description else ''}")


def _print_result(result: dict[str, Any]) -> int:
    for block in result.get("content", []):
        if block.get("type") == "text":
            print(block["text"])
        else:
            print(json.dumps(block))
    if result.get("structuredContent") is not None and not result.get("content"):
        print(json.dumps(result["structuredContent"], indent=2))
    return 1 if result.get("isError") else 0


async def _tools(config: GatewayConfig, stderr: BackendStderr, spawned: Spawned) -> int:
    async with running_hub(config, stderr, READ_ONLY_GRACE, spawned) as hub:
        _print_tools(hub.catalog.tools)
        down = [backend.name for backend in hub.backends if backend.state != "up"]
        if down:
            print(f"backends down: {', '.join(down)}", file=sys.stderr)
        return 0


async def _call(
    config: GatewayConfig, tool: str, arguments: dict[str, Any], stderr: BackendStderr, spawned: Spawned
) -> int:
    """Call `tool` on the backends of `config` (`_local` narrowed it to those that may expose it)."""
    async with running_hub(config, stderr, spawned=spawned) as hub:
        return _print_result(await hub.call_tool(tool, arguments))


READ_ONLY_GRACE = 0.2  # `tools` and `check` wrote nothing: their backends need no time to wind down
_ROW = "{:<16} {:<11} {:<8} {:>5} {:>11}  {}"


async def _check(config: GatewayConfig, security: Security, stderr: BackendStderr, spawned: Spawned) -> int:
    """Start every backend at once; print each one's row as soon as it is up or has failed."""
    hub = _hub(config, stderr, READ_ONLY_GRACE, spawned)
    print(_ROW.format("SERVER", "TRANSPORT", "STATE", "TOOLS", "START-UP MS", "ERROR"), flush=True)

    async def report(backend: Any) -> None:
        await backend.ready.wait()
        state, tools, error = backend.state, len(backend.tools), backend.last_error  # before any restart
        startup = f"{backend.startup_ms:.0f}" if backend.startup_ms is not None else "-"
        cause = "" if state == "up" else await _cause(backend, error or "failed", stderr)
        print(_ROW.format(backend.name, backend.transport, state, tools, startup, security.redactor(cause)), flush=True)

    async with anyio.create_task_group() as group:
        group.start_soon(hub.run)
        async with anyio.create_task_group() as reports:
            for backend in hub.backends:
                reports.start_soon(report, backend)
        group.cancel_scope.cancel()
    return 0 if hub.healthy else 1


async def _local(
    command: str,
    config: GatewayConfig,
    security: Security,
    log_format: str,
    tool: str | None,
    arguments: dict[str, Any],
) -> int:
    """`check`, `tools` or `call` on backends started here: the stdio children first, then this process's
    MCP stack (FastMCP, the SDK, the hub), so the two imports overlap."""
    from gateway.ops import logs

    # `check`'s failed rows show a backend's last stderr line; the others only relay it, scrubbed
    stderr = logs.BackendStderr(log_format, security.redactor, keep_last=command == "check")
    if command == "call":
        assert tool is not None
        config = needed_by(config, tool)
    spawned = await spawn_children(config, stderr)
    try:
        logs.route_framework_logs()
        if command == "check":
            return await _check(config, security, stderr, spawned)
        if command == "tools":
            return await _tools(config, stderr, spawned)
        return await _call(config, tool or "", arguments, stderr, spawned)
    finally:
        with anyio.CancelScope(shield=True):
            await _reap(spawned)


async def _cause(backend: Any, error: str, stderr: BackendStderr) -> str:
    """Why a backend failed to start: a stdio child's last stderr line, else the error, naming the URL."""
    if backend.transport == "stdio":
        with anyio.move_on_after(0.5):  # the child's last words may still be in the pipe
            while stderr.last_line(backend.name) is None:
                await anyio.sleep(0.02)
        line = stderr.last_line(backend.name)
        return f"{line} ({error})" if line and line not in error else error
    url = backend.config.url
    return error if not url or url in error else f"{url}: {error}"


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
            tracer=tracer or tracing.NO_TRACING,
            stderr=stderr,
            profile=profile,
            config_file=config_file,
            started=_collect_from_now,
        )
    finally:
        if tracer is not None:
            tracer.shutdown()
    return 0


MIN_TOKEN_LENGTH = 32


def _hash_token(from_stdin: bool) -> int:
    """Print a new high-entropy token (or hash one from stdin) and the config entry for it."""
    from gateway.auth.keys import hash_token

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
    from gateway.auth.keys import auth_enabled, is_loopback

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


def _operator_error(message: str) -> None:
    """Print why the command cannot go on: one line, `mcp-gateway: <message>`; with
    `MCP_GATEWAY_LOG_FORMAT=json`, one JSON record (level ERROR) like every other line on stderr."""
    if os.environ.get("MCP_GATEWAY_LOG_FORMAT", "text").strip().lower() == "json":
        import logging

        from gateway.ops.logs import JsonFormatter

        record = logging.LogRecord("mcp_gateway.cli", logging.ERROR, __file__, 0, message, None, None)
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"mcp-gateway: {message}", file=sys.stderr)


def _arguments(text: str) -> dict[str, Any]:
    """`--args` as a JSON object, or exit 2 saying what is wrong with it."""
    try:
        arguments = json.loads(text)
    except json.JSONDecodeError as error:
        _operator_error(f"--args is not valid JSON: {error.msg}")
        sys.exit(EXIT_CONFIG)
    if not isinstance(arguments, dict):
        _operator_error("--args must be a JSON object")
        sys.exit(EXIT_CONFIG)
    return arguments


async def _from_running(command: str, url: str, tool: str | None, arguments: dict[str, Any]) -> int | None:
    """Run `tools` / `call` on the gateway at `url`: the exit code, or None when no gateway answers there."""
    try:
        if command == "tools":
            _print_tools(await _remote_tools(url))
            return 0
        assert tool is not None
        return _print_result(await _ask(url, "tools/call", {"name": tool, "arguments": arguments}, name=tool))
    except NoGateway:
        return None
    except RuntimeError as error:
        _operator_error(str(error))
        return 1


def _collect_from_now() -> None:
    """Start-up is over: what it built (modules, classes, pydantic's schemas: nearly all of the heap) lives
    as long as the process, so it is frozen (no later collection walks it again) and collection resumes."""
    gc.freeze()
    gc.enable()


def main(argv: list[str] | None = None) -> None:
    # No cyclic collection during start-up: importing the MCP stack makes hundreds of thousands of objects
    # that all stay, and the collector would walk them over and over (~15 % of a gateway's start-up CPU).
    # `serve` turns it back on once every backend has started (`_collect_from_now`); `check`, `tools` and
    # `call` end within seconds and run without it.
    gc.disable()
    args = _parser().parse_args(argv)
    if args.command == "hash-token":
        sys.exit(_hash_token(args.stdin))
    arguments = _arguments(args.args) if args.command == "call" else {}
    if args.command in ("tools", "call"):
        code = anyio.run(_from_running, args.command, args.url, getattr(args, "tool", None), arguments)
        if code is not None:
            sys.exit(code)
    from gateway.config.loader import ConfigError, load_config
    from gateway.guard.audit import setup_audit
    from gateway.ops import logs
    from gateway.serve import BindError, load_security

    log_format = logs.setup(os.environ, frameworks=args.command == "serve")  # else `_local` routes them
    try:
        config = load_config(args.config, os.environ)
        security = load_security(config, args.config, os.environ, _raw_servers(args.config))
    except ConfigError as error:
        _operator_error(f"config error: {error}")
        sys.exit(EXIT_CONFIG)
    logs.install_log_redaction(security.redactor)
    setup_audit(security.audit, config.gateway.audit, log_format)
    if args.command == "serve":
        stderr = logs.BackendStderr(log_format, security.redactor)  # stdio backends' stderr, scrubbed
        if args.transport == "http" and (refusal := _bind_refusal(args.host, config, args.insecure_no_auth)):
            _operator_error(refusal)
            sys.exit(EXIT_CONFIG)
        if args.profile is not None and (refusal := _profile_refusal(args.profile, args.transport, config)):
            _operator_error(refusal)
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
        except* BindError as group:  # the address cannot be served: found before any backend starts
            refused = group.exceptions[0]
        except* ConfigError as group:  # found once the backends list their tools (a renamed tool's clash)
            refused = group.exceptions[0]
            while isinstance(refused, BaseExceptionGroup):  # task groups nest: the first leaf
                refused = refused.exceptions[0]
        if isinstance(refused, BindError):
            _operator_error(str(refused))
            sys.exit(EXIT_CONFIG)
        if isinstance(refused, ConfigError):
            _operator_error(f"config error: {args.config}: {refused.path}: {refused.problem}")
            sys.exit(EXIT_CONFIG)
    else:
        code = anyio.run(_local, args.command, config, security, log_format, getattr(args, "tool", None), arguments)
        # Done (backends stopped, output written): the interpreter's shutdown would walk every object in a
        # last full collection; frozen objects are skipped.
        gc.freeze()
    sys.exit(code)
