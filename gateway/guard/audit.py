"""The audit log: one JSON line per tool call, formatted on the call path and written off the event loop."""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway.config.loader import AuditSettings

audit_logger = logging.getLogger("mcp_gateway.audit")


class AuditLog:
    """The hot path only formats a line and puts it on a queue; a background thread hands the lines to
    the `mcp_gateway.audit` logger (its handlers: stderr or the configured file) in batches, so the event
    loop never waits on a write or on the logging machinery. Off (`enabled` False) until `setup_audit`."""

    def __init__(self, arguments: bool = False, scrub: Callable[[str], str] | None = None) -> None:
        self.enabled = False
        self.arguments = arguments  # include the call's arguments, passed through `scrub`
        self.scrub = scrub or (lambda text: text)
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._second, self._stamp = 0, ""
        self._quoted: dict[str, str] = {}

    def record(
        self, client: str | None, tool: str, outcome: str, began: float, arguments: dict[str, Any] | None
    ) -> None:
        """One JSON line, built by hand (names are JSON-quoted once and cached): this runs on every call."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        quoted = self._quoted
        if len(quoted) > 4096:
            quoted.clear()
        name = quoted.get(tool) or quoted.setdefault(tool, json.dumps(tool))
        who = "null" if client is None else quoted.get(client) or quoted.setdefault(client, json.dumps(client))
        ms = round((time.perf_counter() - began) * 1000, 2)
        line = (
            f'{{"ts":"{self._stamp}.{int((now - second) * 1000):03d}Z","client":{who},"tool":{name},'
            f'"outcome":"{outcome}","ms":{ms}'
        )
        if self.arguments:
            line += ',"arguments":' + self.scrub(json.dumps(arguments or {}, default=str, separators=(",", ":")))
        self.lines.put(line + "}")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
            self._thread.start()
            atexit.register(self.stop)

    def stop(self) -> None:
        if self._thread is not None:
            self.lines.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            batch = [self.lines.get()]
            try:
                while len(batch) < 10_000:
                    batch.append(self.lines.get_nowait())
            except queue.Empty:
                pass
            for line in batch:
                if line is None:
                    return
                audit_logger.info(line)
            time.sleep(0.02)  # let lines gather: one wake-up per batch, not per call


def setup_audit(audit: AuditLog, settings: AuditSettings) -> None:
    """Send `audit`'s lines to the `mcp_gateway.audit` logger: JSON lines to stderr (or `file`), never
    propagated; start its writer thread when `settings.enabled`."""
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
    else:
        writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(logging.Formatter("%(message)s"))
    audit_logger.addHandler(writer)
    audit_logger.setLevel(logging.INFO)
    audit.start()
