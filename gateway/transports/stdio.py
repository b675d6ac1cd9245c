"""MCP over stdio: newline-delimited JSON-RPC on the process's stdin/stdout.

Hot requests of an established session take the fast path; everything else (the handshake,
resources, prompts, notifications, malformed input) goes to the FastMCP front through the SDK's
stream pair. Lines are split and dispatched as the event loop reads them (`_Stdin`), so a fast-path
call starts in the loop turn after its bytes arrive. Writes to stdout come from one event loop, a whole
line at a time, so they never mix.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import stat
import sys
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types
from fastmcp import FastMCP
from mcp.shared.message import SessionMessage

from gateway.backends.era import ClientEra
from gateway.backends.inflight import CURRENT_PEER
from gateway.ops.codec import dumps, whole_lines
from gateway.routing.hub import LIST_CHANGED
from gateway.transports import framework, jsonrpc
from gateway.transports.fastpath import FastPath, cancelled_request_id, is_fast_candidate, modern_version
from gateway.transports.peers import ClientPeer, Replies, declared_capabilities

logger = logging.getLogger("mcp_gateway.stdio")
_GONE = object()


def _claim_stdio() -> tuple[int, int]:
    """Take fds 0/1 for the wire and point them at /dev/null and stderr, so stray prints can't corrupt it."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return wire_in, wire_out


def _is_stream(fd: int) -> bool:
    """Whether the event loop can poll `fd`: a pipe, a socket or a terminal. A regular file or another
    character device (`/dev/null`, as a service manager or `docker run` without `-i` hands over) cannot be
    polled: epoll refuses it, and uvloop aborts the process on that refusal."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))


class _Stdin(asyncio.Protocol):
    """The client's stdin as the event loop reads it: each chunk handed to `feed` as it arrives (no stream
    reader, no read-loop task: a request is dispatched in the same turn of the loop as its bytes are read)."""

    def __init__(self, feed: Callable[[bytes], None], ended: Callable[[], None]) -> None:
        self._feed, self._ended = feed, ended

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()


async def _line_writer(fd: int) -> Callable[[bytes], None]:
    """Write stdout through the event loop when it can be polled; directly otherwise."""
    if _is_stream(fd):
        transport, _ = await asyncio.get_running_loop().connect_write_pipe(asyncio.Protocol, os.fdopen(fd, "wb", 0))
        return transport.write

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return write


class StdioFront:
    """One stdio session in front of the FastMCP server."""

    def __init__(self, front: FastMCP, fast: FastPath, max_line_bytes: int, era: ClientEra | None = None) -> None:
        self.front = front
        self.era = era  # the client's protocol era, which the backends wait for (decided by its first request)
        self.fast = fast
        self.max_line_bytes = max_line_bytes
        self.legacy_version: str | None = None
        self._initialize_ids: set[Any] = set()
        self._write: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # taken once: get_running_loop() is a getpid() each
        # fast-path calls accepted and not answered yet, with their request ids; and the same by request id
        # (a later duplicate id wins)
        self._in_flight: dict[asyncio.Task[None], Any] = {}
        self._by_id: dict[Any, asyncio.Task[None]] = {}
        self._server_pending: set[Any] = set()  # ids of the requests FastMCP serves, not answered yet
        self._idle: asyncio.Event | None = None  # set when the last of both is answered (waited on at EOF)
        self.replies = Replies()  # relayed requests awaiting the client's answer
        self.client_capabilities: Any = None  # from the client's `initialize`
        self._peer: tuple[Any, ClientPeer] | None = None  # the handshake-era client, for its capabilities
        self._buffer = bytearray()  # the start of a line not complete yet
        self._discarding = False  # skipping the rest of an over-long line
        self._for_server: asyncio.Queue[SessionMessage | None] = asyncio.Queue()  # to FastMCP, in order; None: EOF
        self._stdin: asyncio.ReadTransport | None = None
        self._paused = False  # stdin is not read while FastMCP is behind (`_backlog`)
        self._resumed: asyncio.Event | None = None  # the thread reader's pause
        self._input_ended: asyncio.Event | None = None  # set at EOF (or when reading stops)
        self._input_closed = False
        self._reading: anyio.CancelScope | None = None
        self._stopping = False

    def stop(self) -> None:
        """Stop reading (as at EOF): the calls already accepted finish, then `serve` returns."""
        self._stopping = True
        if self._reading is not None:
            self._reading.cancel()

    def send(self, message: dict[str, Any]) -> None:
        self._write(dumps(message) + b"\n")

    async def serve(self) -> None:
        wire_in, wire_out = _claim_stdio()
        self._loop = asyncio.get_running_loop()
        self._write = await _line_writer(wire_out)
        to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](16)
        lowlevel = framework.lowlevel(self.front)
        try:
            async with framework.lifespan(self.front), anyio.create_task_group() as group:
                options = lowlevel.create_initialization_options()
                group.start_soon(lambda: lowlevel.run(server_reads, server_writes, options))
                group.start_soon(self._relay_server_output, from_server)
                forwarded = anyio.Event()
                group.start_soon(self._forward_to_server, to_server, forwarded)
                with anyio.CancelScope() as self._reading:  # stop() cancels it: no more input is read
                    if not self._stopping:
                        await self._read(wire_in)
                self._end_input()
                # stdin closed: let what was read reach FastMCP, and the requests already accepted (fast-path
                # calls and FastMCP's alike) be answered (bounded), then stop.
                with anyio.move_on_after(self.fast.hub.settings.call_timeout):
                    await forwarded.wait()
                    while self._in_flight or self._server_pending:
                        self._idle = asyncio.Event()
                        await self._idle.wait()
                await to_server.aclose()
                group.cancel_scope.cancel()
        finally:  # what is still running (past the bound, or serving was cancelled) is cancelled with it
            self._end_input()
            if calls := list(self._in_flight):
                for task in calls:
                    task.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(calls)

    # ------------------------------------------------------------------ reading

    async def _read(self, fd: int) -> None:
        """Feed stdin to `_feed` until EOF: through the event loop when it can be polled (`_Stdin`), from a
        worker thread otherwise."""
        ended = self._input_ended = asyncio.Event()
        if _is_stream(fd):
            loop = asyncio.get_running_loop()
            stdin, _ = await loop.connect_read_pipe(lambda: _Stdin(self._feed, ended.set), os.fdopen(fd, "rb", 0))
            self._stdin = stdin
            await ended.wait()
        else:
            self._resumed = asyncio.Event()
            self._resumed.set()
            while data := await anyio.to_thread.run_sync(os.read, fd, 2**16):
                self._feed(data)
                await self._resumed.wait()
        if self._buffer.strip() and not self._discarding:  # EOF: the rest of the buffer is the last line
            self._dispatch(bytes(self._buffer))

    def _end_input(self) -> None:
        """No more input (EOF, `stop`, or serving cancelled): stop reading; FastMCP reads EOF after what it was
        handed (once)."""
        if self._input_closed:
            return
        self._input_closed = True
        if self._input_ended is not None:
            self._input_ended.set()
        if self._stdin is not None:
            self._stdin.close()
            self._stdin = None
        self._buffer.clear()
        self._for_server.put_nowait(None)

    def _feed(self, data: bytes) -> None:
        """Dispatch each whole line of `data` (with what the buffer holds); answer an over-long line with an
        error and skip it."""
        if self._input_closed:
            return  # read after EOF or `stop`: not taken
        buffer = self._buffer
        for line in whole_lines(buffer, data):
            if self._discarding:  # the end of an over-long line
                self._discarding = False
            elif line.strip():
                self._dispatch(line)
        if len(buffer) > self.max_line_bytes:
            if not self._discarding:
                too_long = jsonrpc.Malformed(jsonrpc.INVALID_REQUEST, f"message over {self.max_line_bytes} bytes")
                self.send(too_long.response)
            buffer.clear()
            self._discarding = True

    def _dispatch(self, line: bytes) -> None:
        try:
            message = jsonrpc.decode(line)
        except jsonrpc.Malformed as error:
            self.send(error.response)
            return
        era = self.era
        if era is not None and era.modern is None and isinstance(message, dict) and "id" in message:
            era.observe(message.get("method"), modern_version(message) is not None, message.get("params"))
        cancelled = cancelled_request_id(message)
        if cancelled is not None:
            if self._cancel(cancelled):
                return
            self._server_pending.discard(cancelled)  # (a cancelled request is not answered)
        if self.replies and self.replies.take(self, message):
            return
        if is_fast_candidate(message):
            modern = modern_version(message) is not None
            if modern or self.legacy_version is not None:
                # A plain asyncio task (the stdio front runs on asyncio): an anyio task group's spawn costs a
                # cancel scope and several look-ups per call, and so would a cancel scope per call (~7 µs): a
                # `notifications/cancelled` cancels the task itself (`_cancel`). Counted and cancellable now, so
                # EOF or a cancellation right after still finds it; the task takes itself off when it ends.
                assert self._loop is not None
                task = self._loop.create_task(self._answer_fast(message, modern))
                self._in_flight[task] = request_id = message["id"]
                self._by_id[request_id] = task
                return
        try:
            parsed = mcp_types.jsonrpc_message_adapter.validate_python(message, by_name=False)
        except Exception:
            request_id = message.get("id") if isinstance(message, dict) else None
            invalid = jsonrpc.Malformed(jsonrpc.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
            invalid.request_id = request_id
            self.send(invalid.response)
            return
        if isinstance(message, dict) and "id" in message and "method" in message:
            self._server_pending.add(message["id"])
            if message["method"] == "initialize":
                self._initialize_ids.add(message["id"])
                self.client_capabilities = declared_capabilities(message)
        self._for_server.put_nowait(SessionMessage(parsed))
        self._backlog()

    def _backlog(self) -> None:
        """Stop reading stdin while FastMCP is behind (16 messages queued); `_forward_to_server` resumes it."""
        if self._for_server.qsize() < 16:
            return
        self._paused = True
        if self._stdin is not None:
            self._stdin.pause_reading()
        elif self._resumed is not None:
            self._resumed.clear()

    async def _forward_to_server(self, to_server: Any, forwarded: anyio.Event) -> None:
        """Hand FastMCP what it serves, in the order it was read, up to EOF."""
        while (message := await self._for_server.get()) is not None:  # (`serve` closes the stream)
            await to_server.send(message)
            if self._paused and self._for_server.qsize() < 8:
                self._paused = False
                if self._stdin is not None:
                    self._stdin.resume_reading()
                elif self._resumed is not None:
                    self._resumed.set()
        forwarded.set()

    # ------------------------------------------------------------------ fast-path calls

    def _cancel(self, request_id: Any) -> bool:
        """Cancel the fast-path call `request_id` (it sends no response; the backend is sent
        `notifications/cancelled`); False when no such call is running here."""
        task = self._by_id.get(request_id) if isinstance(request_id, str | int | float) else None
        if task is None or task.done():
            return False
        task.cancel()
        task.add_done_callback(self._answered)  # a task cancelled before it ran never reaches its own `finally`
        return True

    def _client_peer(self) -> ClientPeer:
        """The handshake-era client, for the backend's requests and logs during its calls: one for the
        session (its capabilities are the `initialize`'s; its `post` writes at once, so it holds no call's
        pending notifications)."""
        capabilities = self.client_capabilities
        if self._peer is None or self._peer[0] is not capabilities:
            ask = functools.partial(self.replies.ask, self, self.send)  # answered on stdin, see _dispatch
            self._peer = (capabilities, ClientPeer(self, self.send, ask, capabilities, self.front))
        return self._peer[1]

    async def _answer_fast(self, message: dict[str, Any], modern: bool) -> None:
        try:
            if not modern:  # handshake era: the backend may ask this client things during the call
                CURRENT_PEER.set(self._client_peer())  # this task's own
            try:
                response = await self.fast.answer(message, modern=modern, post=self.send)
            except Exception:  # a bug, not the call's outcome: the client still gets an answer for its id
                logger.exception("answering %s failed", message["method"])
                error = {"code": -32603, "message": "Internal error"}
                response = {"jsonrpc": "2.0", "id": message["id"], "error": error}
            if response is not None:
                try:
                    self.send(response)
                except Exception as error:  # e.g. stdout is gone
                    logger.warning("answering a call failed: %s", error)
        finally:
            self._answered(asyncio.current_task(self._loop))

    def _answered(self, task: Any) -> None:
        """Take a fast-path call off the books (once; from its own task's end, or when cancelled)."""
        request_id = self._in_flight.pop(task, _GONE)
        if request_id is _GONE:
            return
        if self._by_id.get(request_id) is task:
            del self._by_id[request_id]
        if self._idle is not None and not self._in_flight and not self._server_pending:
            self._idle.set()

    async def _relay_server_output(self, from_server: Any) -> None:
        async with from_server:
            async for session_message in from_server:
                data = session_message.message.model_dump(by_alias=True, mode="json", exclude_unset=True)
                if "method" not in data:  # FastMCP's answer to a request the client sent
                    if data.get("id") in self._initialize_ids and "result" in data:
                        self._initialize_ids.discard(data["id"])
                        self.legacy_version = data["result"].get("protocolVersion")
                    self.send(data)
                    self._server_pending.discard(data.get("id"))
                    if self._idle is not None and not self._in_flight and not self._server_pending:
                        self._idle.set()
                    continue
                self.send(data)

    async def announce_tools_changed(self) -> None:
        if self._write is not None and self.legacy_version is not None:
            for method in LIST_CHANGED:
                self.send({"jsonrpc": "2.0", "method": method})
