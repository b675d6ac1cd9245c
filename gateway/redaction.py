"""Secrets out of logs and error texts, and the audit log: used by every transport, with or without auth."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.config import ENV_REFERENCE, AuditSettings, GatewayConfig

audit_logger = logging.getLogger("mcp_gateway.audit")

REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_SECRET_LENGTH = 8


# ---------------------------------------------------------------------------------------------- redaction


class Redactor:
    """Replaces known secret values, bearer tokens and `Authorization` header values with [REDACTED]."""

    _GENERIC = (
        r"(?:(?<=bearer )|(?<=basic ))[A-Za-z0-9._~+/=-]{8,}"
        r"|(?:(?<=authorization: )|(?<=authorization=)|(?<=\"authorization\": \"))(?!bearer |basic )[^\s\"',}]{6,}"
    )

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
        literal = "|".join(re.escape(s) for s in self.secrets)
        self.pattern = re.compile(f"{literal}|{self._GENERIC}" if literal else self._GENERIC, re.IGNORECASE)

    def __call__(self, text: str) -> str:
        return self.pattern.sub(REDACTED, text)

    def result(self, result: dict[str, Any]) -> dict[str, Any]:
        """Scrub the text blocks of an error `CallToolResult` (in place)."""
        for block in result.get("content") or ():
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                block["text"] = self(block["text"])
        return result


def collect_secrets(
    config: GatewayConfig, raw_servers: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> set[str]:
    """Values to scrub: env vars referenced (`${VAR}`) in servers' `env`/`headers`, header values,
    server env values under secret-looking names, and every `*TOKEN*`/`*SECRET*`/`*KEY*`/`*PASSWORD*`
    variable of the gateway's environment."""
    secrets: set[str] = set()
    for name, value in environ.items():
        if _SECRET_NAME.search(name):
            secrets.add(value)
    for server in (raw_servers or {}).values():
        if not isinstance(server, dict):
            continue
        for section in ("env", "headers"):
            for value in (server.get(section) or {}).values():
                if isinstance(value, str):
                    for match in ENV_REFERENCE.finditer(value):
                        if environ.get(match.group(1)):
                            secrets.add(environ[match.group(1)])
    for server in config.mcp_servers.values():
        secrets.update(server.headers.values())
        for header_value in server.headers.values():
            secrets.add(header_value.split(" ", 1)[-1])
        secrets.update(value for key, value in server.env.items() if _SECRET_NAME.search(key))
    return {secret for secret in secrets if len(secret) >= _MIN_SECRET_LENGTH}


class _RedactingFactory:
    """A log record factory that formats and scrubs each record's message (and traceback) once."""

    def __init__(self, inner: Callable[..., logging.LogRecord], redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        redact_record(record, self.redactor)
        return record


def redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    try:
        message = record.getMessage()
    except Exception:
        message = str(record.msg)
    record.msg, record.args = redactor(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = redactor(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None


class RedactingFilter(logging.Filter):
    """The same scrubbing as a handler filter, for handlers that see records from elsewhere."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record, self.redactor)
        return True


_active_redactor: Redactor | None = None
_relay: Any = None


def install_log_redaction(redactor: Redactor) -> None:
    """Scrub every log record of this process, whichever logger or handler it goes to (and what stdio
    backends write to stderr, through `backend_errlog`)."""
    global _active_redactor
    _active_redactor = redactor
    factory = logging.getLogRecordFactory()
    if isinstance(factory, _RedactingFactory):
        factory.redactor = redactor
        return
    logging.setLogRecordFactory(_RedactingFactory(factory, redactor))


def backend_errlog() -> Any:
    """Where a stdio backend's stderr goes: a pipe whose lines are scrubbed on their way to our stderr
    (one pipe and one reader thread for all backends), or plain stderr when redaction is not installed."""
    global _relay
    if _active_redactor is None:
        return sys.stderr
    if _relay is None:
        import threading

        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, True)

        def pump() -> None:
            out = getattr(sys.stderr, "buffer", None)
            with os.fdopen(read_fd, "rb") as source:
                for line in source:
                    redactor = _active_redactor
                    text = line.decode(errors="replace")
                    text = redactor(text) if redactor is not None else text
                    try:
                        if out is not None:
                            out.write(text.encode())
                            out.flush()
                        else:
                            sys.stderr.write(text)
                    except (OSError, ValueError):
                        pass

        threading.Thread(target=pump, name="backend-stderr", daemon=True).start()
        _relay = os.fdopen(write_fd, "w", buffering=1)
    return _relay


# ---------------------------------------------------------------------------------------------- audit


class AuditLog:
    """The hot path only formats a line and puts it on a queue; a background thread hands the lines to
    the `mcp_gateway.audit` logger (its handlers: stderr or the configured file) in batches, so the event
    loop never waits on a write or on the logging machinery."""

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
            for line in batch:
                if line is None:
                    return
                audit_logger.info(line)
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
    writer = logging.FileHandler(settings.file, encoding="utf-8") if settings.file else logging.StreamHandler(
        sys.stderr
    )
    writer.setFormatter(logging.Formatter("%(message)s"))
    audit_logger.addHandler(writer)
    audit_logger.setLevel(logging.INFO)
    audit_log.start()
