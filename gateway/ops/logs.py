"""Logging set-up: text (default) or one JSON object per line (`MCP_GATEWAY_LOG_FORMAT=json`), and the
request id that ties an HTTP request's log lines together.

The request id comes from the client's `X-Request-Id` header when it is a sane token, else a new one is
made (`accept_request_id`); the HTTP entry (gateway/transports/http.py) echoes it in the response's
`X-Request-Id` header, and it is carried, through a context variable, on every log line written while the
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


def setup(environ: Mapping[str, str]) -> str:
    """Configure the root logger from MCP_GATEWAY_LOG_LEVEL / MCP_GATEWAY_LOG_FORMAT; return the format."""
    level_name = environ.get("MCP_GATEWAY_LOG_LEVEL", "INFO").upper()
    level = getattr(logging, level_name, logging.INFO)
    fmt = environ.get("MCP_GATEWAY_LOG_FORMAT", "text").strip().lower()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        fmt = "text"
        handler.addFilter(_RequestIdFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s"))
    # FastMCP configures its own rich console handler when imported (wrapped, multi-line records in another
    # format); send its records and the SDK's through ours instead, so every line has one format.
    import fastmcp  # noqa: F401

    for name in ("fastmcp", "mcp"):
        framework = logging.getLogger(name)
        framework.handlers.clear()
        framework.propagate = True
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return fmt


def accept_request_id(value: bytes | None) -> str:
    """The request id for a request whose `X-Request-Id` header is `value`: that one when it is a sane
    token, else a new one (the HTTP entry, gateway/transports/http.py, sets it in `request_id` and echoes it
    in the response)."""
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


def install_log_redaction(redactor: Scrub) -> None:
    """Scrub every log record of this process, whichever logger or handler it goes to (the record factory
    is process-wide by the logging module's design)."""
    factory = logging.getLogRecordFactory()
    if isinstance(factory, _RedactingFactory):
        factory.redactor = redactor
        return
    logging.setLogRecordFactory(_RedactingFactory(factory, redactor))


class BackendStderr:
    """Where each stdio backend's stderr goes, by log format: as text, a pipe whose lines are scrubbed with
    `scrub` on their way to the gateway's stderr (one pipe and one reader thread for all backends; plain
    stderr without `scrub`); with JSON logs, a pipe per backend whose lines are logged as records of
    `mcp_gateway.backend.<name>` (so every line the gateway writes is JSON; the redacting record factory
    scrubs them like any record). Pipes and threads live as long as the process, reused across restarts."""

    def __init__(self, log_format: str = "text", scrub: Scrub | None = None, *, keep_last: bool = False) -> None:
        self.log_format = log_format
        self.scrub = scrub
        self._pipes: dict[str, TextIO] = {}
        self._relay: TextIO | None = None
        # `keep_last` (`mcp-gateway check`): a pipe per backend in either format, and its last line kept
        self._last: dict[str, str] | None = {} if keep_last else None

    def last_line(self, name: str) -> str | None:
        """The last non-empty line backend `name` wrote to stderr (with `keep_last`)."""
        return None if self._last is None else self._last.get(name)

    def __call__(self, name: str) -> TextIO:
        if self.log_format == "json" or self._last is not None:
            return self._records(name)
        if self.scrub is None:
            return sys.stderr
        if self._relay is None:
            self._relay = self._scrubbing_relay(self.scrub)
        return self._relay

    def _records(self, name: str) -> TextIO:
        pipe = self._pipes.get(name)
        if pipe is None:
            read_fd, write_fd = os.pipe()
            pipe = self._pipes[name] = os.fdopen(write_fd, "w", buffering=1)
            log = logging.getLogger(f"mcp_gateway.backend.{name}")

            def relay() -> None:
                with os.fdopen(read_fd, "r", errors="replace") as lines:
                    for line in lines:
                        if line.strip():
                            if self._last is not None:
                                self._last[name] = line.strip()
                            log.info(line.rstrip(), extra={"stream": "stderr"})

            threading.Thread(target=relay, name=f"stderr-{name}", daemon=True).start()
        return pipe

    @staticmethod
    def _scrubbing_relay(scrub: Scrub) -> TextIO:
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, True)

        def pump() -> None:
            out = getattr(sys.stderr, "buffer", None)
            with os.fdopen(read_fd, "rb") as source:
                for line in source:
                    text = scrub(line.decode(errors="replace"))
                    try:
                        if out is not None:
                            out.write(text.encode())
                            out.flush()
                        else:
                            sys.stderr.write(text)
                    except (OSError, ValueError):
                        pass

        threading.Thread(target=pump, name="backend-stderr", daemon=True).start()
        return os.fdopen(write_fd, "w", buffering=1)
