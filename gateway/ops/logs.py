"""Logging in one format: text (default) or one JSON object per line (`MCP_GATEWAY_LOG_FORMAT=json`) for
every line the gateway writes to stderr, and the request id that ties an HTTP request's log lines together.

One handler on the root logger writes every record: the gateway's, FastMCP's, the SDK's, uvicorn's and the
in-process servers' (their own handlers are removed, so nothing is Rich-wrapped or in another format), and
Python warnings. stdio backends' stderr is relayed through it too (`BackendStderr`): each backend message
becomes one record of `mcp_gateway.backend.<name>` with the field `server`; a multi-line message (a
traceback) is one record. The audit log, when it goes to stderr, writes its lines in the same format
(gateway/guard/audit.py). Text lines are `<time> <LEVEL> <logger>[ [request id]]: <message>`; JSON records
are `{"ts", "level", "logger", "message", "request_id"?, "exc"?, ...fields}`.

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
import selectors
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
        rid = getattr(record, "request_id", None) or getattr(record, SCRUBBED_RID, None) or request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry and key not in ("request_id", SCRUBBED_RID):
                entry[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # the redacting record factory keeps only the (scrubbed) text
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


class _RequestIdFilter(logging.Filter):
    """Adds ` [request_id]` to text lines written during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, SCRUBBED_RID, None) or request_id.get()
        record.rid = f" [{rid}]" if rid else ""
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s"
# Libraries that would write to stderr in a format of their own: their records go through the root handler.
FRAMEWORK_LOGGERS = ("fastmcp", "mcp", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def setup(environ: Mapping[str, str], *, frameworks: bool = True) -> str:
    """Configure the root logger from MCP_GATEWAY_LOG_LEVEL / MCP_GATEWAY_LOG_FORMAT; return the format.
    The servers run on their own (servers/runner.py) call it too, so they log the way the gateway does.
    With `frameworks` false the framework loggers are left for `route_framework_logs` (the CLI calls it
    once a backend is spawned: it imports FastMCP)."""
    level_name = environ.get("MCP_GATEWAY_LOG_LEVEL", "INFO").upper()
    level = getattr(logging, level_name, logging.INFO)
    fmt = environ.get("MCP_GATEWAY_LOG_FORMAT", "text").strip().lower()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        fmt = "text"
        handler.addFilter(_RequestIdFilter())
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.captureWarnings(True)  # warnings become records of `py.warnings`, not raw lines
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if frameworks:
        route_framework_logs()
    return fmt


def route_framework_logs() -> None:
    """FastMCP configures its own Rich console handler when imported (wrapped, multi-line records in another
    format), uvicorn may have its own: send their records through the root handler instead."""
    import fastmcp  # noqa: F401

    for name in FRAMEWORK_LOGGERS:
        framework = logging.getLogger(name)
        for old in list(framework.handlers):
            framework.removeHandler(old)
        framework.propagate = True


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


SCRUBBED_RID = "gateway_request_id"  # the record's request id, scrubbed (a client picks its own X-Request-Id)


class _RedactingFactory:
    """A log record factory that formats and scrubs each record's message (and traceback) once, and the
    request id the record is written under (kept on it as `gateway_request_id` for the formats)."""

    def __init__(self, inner: Callable[..., logging.LogRecord], redactor: Scrub) -> None:
        self.inner = inner
        self.redactor = redactor

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        redact_record(record, self.redactor)
        if (rid := request_id.get()) is not None:
            setattr(record, SCRUBBED_RID, self.redactor(rid))
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


# ---------------------------------------------------------------------------------------- backend stderr

_MESSAGE_IDLE = 0.05  # seconds without a new line after which a backend's pending message is complete
_MAX_MESSAGE_LINES = 1000  # a longer run of continuation lines is cut into several records
_LEVEL_WORD = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


class BackendStderr:
    """Where each stdio backend's stderr goes: a pipe per backend, all read by one relay thread, whose
    messages become records of `mcp_gateway.backend.<name>` (field `server`: the backend's name) written
    by the gateway's handler, in its format, scrubbed by the redacting record factory like any record.

    A line that is a JSON log record (the built-in servers log so under the gateway: `MCP_GATEWAY_LOG_FORMAT`
    is json in their environment, gateway/backends/pipe.py) is one record with its level, logger
    (`backend_logger`), message and traceback. Other lines are grouped into messages: indented lines,
    blank lines and the lines of a Python traceback continue the message before them; a message is
    complete when the next one starts or the backend has written nothing for 50 ms. Its level is the
    first level word in its first line (INFO if none; ERROR at least for a traceback).

    Pipes and the thread live as long as the process, reused across restarts. With `keep_last`
    (`mcp-gateway check`) each backend's last line is kept for `last_line`."""

    def __init__(self, log_format: str = "text", scrub: Scrub | None = None, *, keep_last: bool = False) -> None:
        self.log_format = log_format
        self.scrub: Scrub = scrub or (lambda text: text)
        self._pipes: dict[str, TextIO] = {}
        self._relay: _Relay | None = None
        self._last: dict[str, str] | None = {} if keep_last else None

    def last_line(self, name: str) -> str | None:
        """The last non-empty line backend `name` wrote to stderr (with `keep_last`)."""
        return None if self._last is None else self._last.get(name)

    def __call__(self, name: str) -> TextIO:
        pipe = self._pipes.get(name)
        if pipe is None:
            if self._relay is None:
                self._relay = _Relay()
            pipe = self._pipes[name] = self._relay.add(_Messages(name, self._emit))
        return pipe

    def _emit(self, name: str, message: str, level: int | None, fields: dict[str, Any], exc: str | None) -> None:
        """Log one backend message (level None: read it off the message)."""
        if self._last is not None:
            lines = [line for line in message.splitlines() if line.strip()]
            if lines:
                self._last[name] = lines[-1].strip()
        if level is None:
            level = _level_of(message)
        log = logging.getLogger(f"mcp_gateway.backend.{name}")
        if not log.isEnabledFor(level):
            return
        extra = {
            key: self.scrub(value) if isinstance(value, str) else value
            for key, value in fields.items()
            if key not in _STANDARD_ATTRS
        }
        extra |= {"server": name, "stream": "stderr"}
        record = log.makeRecord(log.name, level, "(stderr)", 0, message, (), None, extra=extra)
        if exc:
            record.exc_text = self.scrub(exc)
        log.handle(record)


def _level_of(message: str) -> int:
    """A plain message's level: the first level word near its start (INFO if none), ERROR at least for a
    traceback."""
    word = _LEVEL_WORD.search(message, 0, 80)
    names = {"WARN": "WARNING", "FATAL": "CRITICAL"}
    level = logging.INFO if word is None else logging.getLevelName(names.get(word.group(1), word.group(1)))
    return max(level, logging.ERROR) if _TRACEBACK in message else level


class _Messages:
    """One backend's stderr, cut into messages (see `BackendStderr`)."""

    def __init__(self, name: str, emit: Callable[[str, str, int | None, dict[str, Any], str | None], None]) -> None:
        self.name = name
        self.emit = emit
        self.partial = b""  # an unfinished line
        self.lines: list[str] = []  # the message being gathered
        self.in_traceback = False
        self.last_data = 0.0

    def feed(self, data: bytes, now: float) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            self._line(raw.decode(errors="replace").rstrip("\r"))
        self.last_data = now

    def pending(self) -> bool:
        return bool(self.lines or self.partial)

    def idle(self, now: float) -> None:
        """Emit what is pending once the backend has been quiet for a while (its message is complete)."""
        if self.pending() and now - self.last_data >= _MESSAGE_IDLE:
            if self.partial:
                self._line(self.partial.decode(errors="replace"))
                self.partial = b""
            self.flush()

    def flush(self) -> None:
        while self.lines and not self.lines[-1].strip():
            self.lines.pop()
        if self.lines:
            self.emit(self.name, "\n".join(self.lines), None, {}, None)
        self.lines, self.in_traceback = [], False

    def _line(self, line: str) -> None:
        if line.startswith("{") and (record := _json_record(line)) is not None:
            self.flush()
            message, level, fields, exc = record
            self.emit(self.name, message, level, fields, exc)
            return
        if self.lines and len(self.lines) < _MAX_MESSAGE_LINES and self._continues(line):
            self.lines.append(line)
            return
        self.flush()
        if line.strip():
            self.lines = [line]
            self.in_traceback = line.startswith(_TRACEBACK)

    def _continues(self, line: str) -> bool:
        """Whether `line` belongs to the message gathered so far."""
        if not line.strip() or line[0] in " \t":
            return True
        if line.startswith(_TRACEBACK) or line.startswith(_CHAINED):
            self.in_traceback = True
            return True
        if self.in_traceback:  # the exception's own line ends the traceback
            self.in_traceback = False
            return True
        return False


def _json_record(line: str) -> tuple[str, int | None, dict[str, Any], str | None] | None:
    """(message, level, fields, traceback) of a JSON log record line; None for anything else."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("message"), str):
        return None
    level = logging.getLevelName(str(entry.get("level", "INFO")).upper())
    exc = entry.get("exc")
    fields = {key: value for key, value in entry.items() if key not in ("ts", "level", "logger", "message", "exc")}
    fields.pop("request_id", None)  # the backend's, not the gateway's
    if isinstance(entry.get("logger"), str):
        fields["backend_logger"] = entry["logger"]
    return entry["message"], level if isinstance(level, int) else None, fields, exc if isinstance(exc, str) else None


class _Relay:
    """One thread reading every backend's stderr pipe (a selector over them), so a message is complete on
    a quiet pipe without a thread per backend."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._added: list[tuple[int, _Messages]] = []
        self._lock = threading.Lock()
        self._streams: list[_Messages] = []
        threading.Thread(target=self._run, name="backend-stderr", daemon=True).start()

    def add(self, messages: _Messages) -> TextIO:
        read_fd, write_fd = os.pipe()
        with self._lock:
            self._added.append((read_fd, messages))
        os.write(self._wake_write, b"+")
        return os.fdopen(write_fd, "w", buffering=1)

    def _run(self) -> None:
        while True:
            waiting = any(stream.pending() for stream in self._streams)
            for key, _ in self._selector.select(_MESSAGE_IDLE if waiting else None):
                if key.fd == self._wake_read:
                    os.read(self._wake_read, 512)
                    with self._lock:
                        added, self._added = self._added, []
                    for fd, stream in added:
                        self._selector.register(fd, selectors.EVENT_READ, stream)
                        self._streams.append(stream)
                    continue
                stream = key.data
                try:
                    data = os.read(key.fd, 65536)
                except OSError:
                    data = b""
                if not data:  # every writer closed it: what is pending is complete
                    self._selector.unregister(key.fd)
                    os.close(key.fd)
                    self._streams.remove(stream)
                self._guarded(stream, data)
            now = time.monotonic()
            for stream in self._streams:
                self._guarded(stream, None, now)

    @staticmethod
    def _guarded(stream: _Messages, data: bytes | None, now: float | None = None) -> None:
        """Feed `data` to `stream` (b"": it ended), or let it emit an idle message: a record that cannot be
        written must not stop the relay of every backend."""
        try:
            if data:
                stream.feed(data, time.monotonic())
            else:
                stream.idle(float("inf") if data == b"" else (now or time.monotonic()))
        except Exception:
            logging.getLogger("mcp_gateway.backend").exception("backend %s: stderr relay failed", stream.name)
