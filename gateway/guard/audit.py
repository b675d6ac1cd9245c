"""The audit log: one JSON line per tool call, written off the event loop."""

from __future__ import annotations

import logging
import sys
from typing import Any

from gateway.config.loader import AuditSettings

audit_logger = logging.getLogger("mcp_gateway.audit")


class AuditLog:
    """The hot path only formats a line and puts it on a queue; a background thread hands the lines to
    the `mcp_gateway.audit` logger (its handlers: stderr or the configured file) as one record per batch,
    so the event loop never waits on a write and the logging machinery runs once per batch, not per call.
    `stop` (also at exit) writes whatever is queued: no line is lost."""

    def __init__(self) -> None:
        import queue

        self.enabled = False
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: Any = None

    def write(self, line: str) -> None:
        self.lines.put(line)

    def start(self) -> None:
        if self._thread is None:
            import atexit
            import threading

            self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
            self._thread.start()
            atexit.register(self.stop)

    def stop(self) -> None:
        if self._thread is not None:
            self.lines.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        import queue
        import time

        while True:
            batch = [self.lines.get()]
            try:
                while len(batch) < 10_000:
                    batch.append(self.lines.get_nowait())
            except queue.Empty:
                pass
            stop = None in batch
            lines = [line for line in batch if line is not None]
            if lines:
                # One record per batch: the record factory scrubs it and the handler writes and flushes it
                # once; with the `%(message)s` format the file still holds one JSON line per call.
                audit_logger.info("\n".join(lines))
            if stop:
                return
            time.sleep(0.02)  # let lines gather: one wake-up per batch, not per call


audit_log = AuditLog()


def setup_audit(settings: AuditSettings) -> None:
    """The `mcp_gateway.audit` logger: JSON lines to stderr (or `file`), never propagated."""
    audit_logger.propagate = False
    for handler in list(audit_logger.handlers):
        audit_logger.removeHandler(handler)
        handler.close()
    audit_log.enabled = settings.enabled
    if not settings.enabled:
        return
    writer: logging.Handler
    writer = (
        logging.FileHandler(settings.file, encoding="utf-8") if settings.file else logging.StreamHandler(sys.stderr)
    )
    writer.setFormatter(logging.Formatter("%(message)s"))
    audit_logger.addHandler(writer)
    audit_logger.setLevel(logging.INFO)
    audit_log.start()
