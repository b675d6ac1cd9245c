"""The gateway over stdio as raw JSON-RPC lines, for tests that look at each line it writes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from tests.helpers.procs import ROOT, child_env
from tests.helpers.redis_proc import orphan_guarded


def check_jsonrpc(item: Any) -> None:
    """A well-formed JSON-RPC 2.0 message: a notification or request, or exactly one of result/error."""
    assert isinstance(item, dict), item
    assert item.get("jsonrpc") == "2.0", item
    if "method" in item:
        return
    assert ("result" in item) != ("error" in item), item
    if "error" in item:
        assert isinstance(item["error"]["code"], int) and isinstance(item["error"]["message"], str), item


class StdioGateway:
    """`mcp-gateway serve` over stdio; the lines it writes are read on a thread into a queue."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            orphan_guarded([sys.executable, "-m", "gateway", "serve", "--config", str(config)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=child_env(),
        )
        self.lines: Queue[bytes] = Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 1000

    def initialize(self) -> dict[str, Any]:
        """The handshake-era `initialize` and `notifications/initialized`; returns the result."""
        self.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                }
            )
        )
        result = self.answer(0)["result"]
        self.send('{"jsonrpc":"2.0","method":"notifications/initialized"}')
        return result

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8", "surrogatepass") + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a request; return its id."""
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(json.dumps(message))
        return self.next_id

    def read(self, timeout: float = 60) -> dict[str, Any]:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except Empty:
            raise AssertionError(f"no answer (process exit code {self.proc.poll()})") from None

    def answer(self, request_id: Any, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Read lines up to the answer to `request_id` (checking each; the others go to `seen`)."""
        while True:
            message = self.read()
            check_jsonrpc(message)
            if message.get("id") == request_id and "method" not in message:
                return message
            if seen is not None:
                seen.append(message)

    def ping(self) -> None:
        assert self.answer(self.request("ping"))["result"] == {}

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
