"""Start the gateway and test backends as real subprocesses and wait until they serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import local_http
from tests.helpers.redis_proc import free_port, orphan_guarded

ROOT = Path(__file__).resolve().parents[2]


def serve_stdio(config: Path, lines: list[str], timeout: float = 90) -> list[dict[str, Any]]:
    """Everything `mcp-gateway serve` over stdio answers to `lines`, written at once and followed by EOF (it
    must exit on its own within `timeout`)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=timeout,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this one's, the repo on PYTHONPATH, quiet logs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MCP_GATEWAY_LOG_LEVEL", "WARNING")
    env.setdefault("FASTMCP_LOG_LEVEL", "WARNING")
    env.update(extra)
    return env


START_TIMEOUT = 300  # an upper bound on a wait for a condition, never a figure: a loaded CI machine may be slow


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> None:
    """Poll `url` until it answers 200, failing early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if local_http.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


STOP_TIMEOUT = 60  # how long a stopped process may take to exit before it is killed


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    _reap(proc)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def module_over_http(module: str, *args: str) -> Iterator[str]:
    """`python -m <module> --http PORT [args]` (a test backend); yields its MCP URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        orphan_guarded([sys.executable, "-m", module, "--http", str(port), *args]),
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                local_http.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{module} did not start serving HTTP") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


def http_backend(name: str = "remote") -> AbstractContextManager[str]:
    """The echo test backend serving Streamable HTTP; yields its MCP URL."""
    return module_over_http("tests.backends.echo", "--name", name)


def write_config(directory: Path, servers: dict[str, Any], gateway: dict[str, Any] | None = None) -> Path:
    path = directory / "mcp.json"
    document: dict[str, Any] = {"mcpServers": servers}
    if gateway:
        document["gateway"] = gateway
    path.write_text(json.dumps(document, indent=2))
    return path


class GatewayProcess:
    """`mcp-gateway serve --transport http` on a free port; its stderr is collected as it comes (`.stderr`)."""

    def __init__(self, config: Path, *args: str, wait_path: str | None = "/ready", **env: str) -> None:
        """Start it and wait until `wait_path` answers 200 (None: return at once; the caller polls, or calls
        `wait_ready` once it has started the others it needs: gateways start in parallel)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            orphan_guarded(
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
                    *args,
                ]
            ),
            cwd=ROOT,
            env=child_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._stderr = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()  # a full pipe would block the gateway's logging
        if wait_path is not None:
            self.wait_ready(wait_path)

    def wait_ready(self, path: str = "/ready") -> None:
        """Wait until `path` answers 200."""
        wait_http(self.base + path, self.proc)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(65536):
            self._stderr += chunk

    @property
    def stderr(self) -> str:
        """What the gateway has written to stderr so far."""
        return self._stderr.decode(errors="replace")

    def health(self) -> dict[str, Any]:
        return local_http.get(self.base + "/health", timeout=5).json()

    def wait_for(self, predicate: Any, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Poll /health until `predicate(health)` holds; return that health document."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if predicate(health):
                return health
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached; last health: {health}")
            time.sleep(0.05)

    def wait_backends_up(self) -> dict[str, Any]:
        """Wait until every backend is up (`/ready` needs only one); return that health document."""
        return self.wait_for(lambda health: all(b["state"] == "up" for b in health["backends"].values()))

    def stop(self) -> str:
        """Stop it as `stop_gateways` does; return its stderr."""
        stop_gateways(self)
        return self.stderr

    def _signal_stop(self) -> None:
        """SIGTERM, and once /ready says the drain began (503), SIGTERM again: the second signal skips the
        drain window (tests/ops/test_shutdown.py checks that window with a single signal). Calls in flight
        still finish, the backends are closed and the audit log is flushed, as after one signal."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                if local_http.get(self.base + "/ready", timeout=1).status_code == 200:
                    time.sleep(0.02)
                    continue
            except httpx.HTTPError:
                pass  # not listening any more: past the drain (or not serving yet)
            if self.proc.poll() is None:
                self.proc.terminate()
            return


def stop_gateways(*gateways: GatewayProcess) -> None:
    """Stop several gateways at once (they close in parallel): signal each (see `_signal_stop`), then wait
    for each to exit."""
    for gateway in gateways:
        gateway._signal_stop()
    for gateway in gateways:
        _reap(gateway.proc)
        gateway._reader.join(timeout=10)


def stdio_echo_server() -> dict[str, Any]:
    return {"command": "python", "args": ["-m", "tests.backends.echo"], "env": {"PYTHONPATH": str(ROOT)}}
