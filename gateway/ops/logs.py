"""Logging set-up: text (default) or one JSON object per line (`MCP_GATEWAY_LOG_FORMAT=json`), and the
request id that ties an HTTP request's log lines together.

The request id comes from the client's `X-Request-Id` header when it is a sane token, else a new one is
made (`accept_request_id`; the HTTP entry, gateway/transports/http.py, echoes it in the response's
`X-Request-Id` header); it is carried, through a context variable, on every log line written while the
request is handled (the fast path and the hub run in its context; calls
that FastMCP's session task runs for a stateful session log without it).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TextIO

request_id: ContextVar[str | None] = ContextVar("mcp_gateway_request_id", default=None)

_VALID_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"?, "exc"?, ...extra}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry and key != "request_id":
                entry[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _RequestIdFilter(logging.Filter):
    """Adds ` [request_id]` to text lines written during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        record.rid = f" [{rid}]" if rid else ""
        return True


def setup(environ: Mapping[str, str] | None = None) -> str:
    """Configure the root logger from MCP_GATEWAY_LOG_LEVEL / MCP_GATEWAY_LOG_FORMAT; return the format."""
    environ = os.environ if environ is None else environ
    level_name = environ.get("MCP_GATEWAY_LOG_LEVEL", "INFO").upper()
    level = getattr(logging, level_name, logging.INFO)
    fmt = environ.get("MCP_GATEWAY_LOG_FORMAT", "text").strip().lower()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        # FastMCP configures its own rich handler when imported; send its records through ours instead.
        import fastmcp  # noqa: F401

        for name in ("fastmcp", "mcp"):
            framework = logging.getLogger(name)
            framework.handlers.clear()
            framework.propagate = True
    else:
        fmt = "text"
        handler.addFilter(_RequestIdFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s"))
    global _format
    _format = fmt
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return fmt


_format = "text"
_stderr_pipes: dict[str, TextIO] = {}
_last_lines: dict[str, str] | None = None  # kept by `keep_backend_stderr`


def keep_backend_stderr() -> None:
    """From now on give each stdio backend its own stderr pipe (its lines logged as records of
    `mcp_gateway.backend.<name>`) and remember its last line, for `last_backend_stderr` (`mcp-gateway check`)."""
    global _last_lines
    if _last_lines is None:
        _last_lines = {}


def last_backend_stderr(name: str) -> str | None:
    """The last non-empty line backend `name` wrote to stderr, once `keep_backend_stderr` was called."""
    return None if _last_lines is None else _last_lines.get(name)


def backend_errlog(name: str) -> TextIO:
    """Where a stdio backend's stderr goes: as text, the redacting relay to the gateway's stderr
    (`redacting_relay`); with JSON logs, a pipe whose lines are logged as records of
    `mcp_gateway.backend.<name>` (so every line the gateway writes is JSON; the redacting record factory
    scrubs them like any record).

    One pipe and one reader thread per backend for the life of the process, reused across restarts."""
    if _format != "json" and _last_lines is None:
        return redacting_relay()
    pipe = _stderr_pipes.get(name)
    if pipe is None:
        read_fd, write_fd = os.pipe()
        pipe = _stderr_pipes[name] = os.fdopen(write_fd, "w", buffering=1)
        log = logging.getLogger(f"mcp_gateway.backend.{name}")

        def relay() -> None:
            with os.fdopen(read_fd, "r", errors="replace") as lines:
                for line in lines:
                    if line.strip():
                        if _last_lines is not None:
                            _last_lines[name] = line.strip()
                        log.info(line.rstrip(), extra={"stream": "stderr"})

        threading.Thread(target=relay, name=f"stderr-{name}", daemon=True).start()
    return pipe


def accept_request_id(value: bytes | None) -> str:
    """The request id for a request whose `X-Request-Id` header is `value`: that one when it is a sane
    token, else a new one (the HTTP entry sets it in `request_id` and echoes it in the response)."""
    if value is not None and _VALID_ID.match(value):
        return value.decode("ascii")
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"  # unique, not secret: no random draw per request


_ID_PREFIX = secrets.token_hex(4)  # per process, so replicas' ids do not collide
_ID_COUNTER = itertools.count()


# ---------------------------------------------------------------------------------------------- redaction

Scrub = Callable[[str], str]  # a `gateway.guard.redaction.Redactor`


class _RedactingFactory:
    """A log record factory that formats and scrubs each record's message (and traceback) once."""

    def __init__(self, inner: Callable[..., logging.LogRecord], redactor: Scrub) -> None:
        self.inner = inner
        self.redactor = redactor

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        redact_record(record, self.redactor)
        return record


def redact_record(record: logging.LogRecord, redactor: Scrub) -> None:
    try:
        message = record.getMessage()
    except Exception:
        message = str(record.msg)
    record.msg, record.args = redactor(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = redactor(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None


_active_redactor: Scrub | None = None
_relay: Any = None


def install_log_redaction(redactor: Scrub) -> None:
    """Scrub every log record of this process, whichever logger or handler it goes to (and what stdio
    backends write to stderr, through `backend_errlog`)."""
    global _active_redactor
    _active_redactor = redactor
    factory = logging.getLogRecordFactory()
    if isinstance(factory, _RedactingFactory):
        factory.redactor = redactor
        return
    logging.setLogRecordFactory(_RedactingFactory(factory, redactor))


def redacting_relay() -> Any:
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
