"""The audit log: one line per tool call, noted on the call path and written off the event loop.

To a file (`gateway.audit.file`) each line is a JSON object `{"ts", "client", "tool", "outcome", "ms",
"arguments"?}`. To stderr (the default) the lines follow the gateway's log format (gateway/ops/logs.py):
as text, `<time> INFO mcp_gateway.audit[ [request id]]: tools/call <tool>: <outcome> client=<name> ms=<ms>
[arguments=<JSON>]`; as JSON, the same object as in a file with the log record's `level`, `logger`,
`message` and `request_id`.

No line is lost: the gateway `flush`es the log as soon as it stops serving (SIGTERM, SIGINT, stdin closed),
before its backends are closed, and `stop` writes whatever is still queued at exit."""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from gateway.config.loader import AuditSettings
from gateway.ops.logs import request_id

audit_logger = logging.getLogger("mcp_gateway.audit")

# What the lines look like: a file's JSON lines, or the stderr log format's.
FILE, TEXT, JSON = "file", "text", "json"
# Seconds the writer lets lines gather after a batch. Each batch costs the writer thread ~0.3-0.5 ms (a log
# record, a write, a GIL hand-off): at 0.02 s that was ~35 µs per call at a few hundred sequential calls/s
# (issue 14); `flush` and `stop` wait at most that much longer.
_GATHER = 0.1


class _Call(NamedTuple):
    at: float  # time.time()
    client: str | None
    tool: str
    outcome: str
    ms: float
    arguments: str | None  # JSON, not yet scrubbed
    request_id: str | None


class AuditLog:
    """The hot path only notes the call on a queue; a background thread formats and scrubs the lines and
    hands them to the `mcp_gateway.audit` logger (its handler: stderr or the configured file) as one record
    per batch, so the event loop never waits on a write and the logging machinery runs once per batch, not
    per call. Off (`enabled` False) until `setup_audit`."""

    def __init__(self, arguments: bool = False, scrub: Callable[[str], str] | None = None) -> None:
        self.enabled = False
        self.arguments = arguments  # include the call's arguments, passed through `scrub`
        self.scrub = scrub or (lambda text: text)
        self.style = FILE
        self.calls: queue.SimpleQueue[_Call | threading.Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._second, self._stamp, self._local = 0, "", ""
        self._quoted: dict[str, str] = {}

    def record(
        self, client: str | None, tool: str, outcome: str, began: float, arguments: dict[str, Any] | None
    ) -> None:
        """Note one call (this runs on every call: the line is built by the writer thread)."""
        ms = round((time.perf_counter() - began) * 1000, 2)
        args = json.dumps(arguments or {}, default=str, separators=(",", ":")) if self.arguments else None
        self.calls.put(_Call(time.time(), client, tool, outcome, ms, args, request_id.get()))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
            self._thread.start()
            atexit.register(self.stop)

    def flush(self, timeout: float = 5) -> None:
        """Return once every line queued so far is written (or after `timeout` seconds)."""
        if self._thread is not None:
            written = threading.Event()
            self.calls.put(written)
            written.wait(timeout)

    def stop(self) -> None:
        """Write every line queued so far, then end the writer thread."""
        if self._thread is not None:
            self.calls.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            batch = [self.calls.get()]
            try:
                while len(batch) < 10_000:
                    batch.append(self.calls.get_nowait())
            except queue.Empty:
                pass
            try:
                lines = [self.line(call) for call in batch if isinstance(call, _Call)]
                if lines:
                    # One record per batch: the handler writes and flushes it once; with the `%(message)s`
                    # format it is still one line per call.
                    audit_logger.info("\n".join(lines))
            except Exception:  # the writer must outlive a line it cannot write
                logging.getLogger("mcp_gateway").exception("audit log: %d line(s) not written", len(batch))
            for call in batch:
                if isinstance(call, threading.Event):
                    call.set()
            if None in batch:
                return
            time.sleep(_GATHER)  # let lines gather: one wake-up per batch, not per call

    def line(self, call: _Call) -> str:
        """The audit line of `call` in this log's style."""
        second = int(call.at)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        millis = int((call.at - second) * 1000)
        arguments = None if call.arguments is None else self.scrub(call.arguments)
        if self.style == TEXT:
            rid = f" [{call.request_id}]" if call.request_id else ""
            line = (
                f"{self._local},{millis:03d} INFO mcp_gateway.audit{rid}: tools/call {call.tool}: {call.outcome}"
                f" client={call.client or '-'} ms={call.ms}"
            )
            return line if arguments is None else f"{line} arguments={arguments}"
        tool, who = self._json(call.tool), "null" if call.client is None else self._json(call.client)
        head = f'{{"ts":"{self._stamp}.{millis:03d}Z",'
        if self.style == JSON:
            message = json.dumps(f"tools/call {call.tool}: {call.outcome}")
            head += f'"level":"INFO","logger":"mcp_gateway.audit","message":{message},'
            if call.request_id is not None:
                head += f'"request_id":{json.dumps(call.request_id)},'
        line = f'{head}"client":{who},"tool":{tool},"outcome":"{call.outcome}","ms":{call.ms}'
        return f"{line}}}" if arguments is None else f'{line},"arguments":{arguments}}}'

    def _json(self, name: str) -> str:
        """`name` JSON-quoted (tool and client names repeat: quoted once)."""
        quoted = self._quoted.get(name)
        if quoted is None:
            if len(self._quoted) > 4096:
                self._quoted.clear()
            quoted = self._quoted[name] = json.dumps(name)
        return quoted


def setup_audit(audit: AuditLog, settings: AuditSettings, log_format: str = "text") -> None:
    """Send `audit`'s lines to the `mcp_gateway.audit` logger, never propagated: JSON lines to
    `settings.file`, else to stderr in `log_format`; start its writer thread when `settings.enabled`."""
    audit_logger.propagate = False
    for handler in list(audit_logger.handlers):
        audit_logger.removeHandler(handler)
        handler.close()
    audit.enabled = settings.enabled
    if not settings.enabled:
        return
    writer: logging.Handler
    if settings.file:
        writer = logging.FileHandler(settings.file, encoding="utf-8")
        audit.style = FILE
    else:
        writer = logging.StreamHandler(sys.stderr)
        audit.style = JSON if log_format == "json" else TEXT
    writer.setFormatter(logging.Formatter("%(message)s"))
    audit_logger.addHandler(writer)
    audit_logger.setLevel(logging.INFO)
    audit.start()
