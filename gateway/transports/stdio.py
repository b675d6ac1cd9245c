"""MCP over stdio: newline-delimited JSON-RPC on the process's stdin/stdout.

Hot requests of an established session take the fast path; everything else (the handshake,
resources, prompts, notifications, malformed input) goes to the FastMCP front through the SDK's
stream pair. Writes to stdout come from one event loop, a whole line at a time, so they never mix.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types
from fastmcp import FastMCP
from mcp.shared.message import SessionMessage

from gateway.backends.inflight import CURRENT_PEER
from gateway.ops.codec import dumps
from gateway.routing.hub import LIST_CHANGED
from gateway.transports import framework, jsonrpc
from gateway.transports.fastpath import FastPath, cancelled_request_id, is_fast_candidate, modern_version
from gateway.transports.peers import ClientPeer, Replies, declared_capabilities

logger = logging.getLogger("mcp_gateway.stdio")


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


async def _chunk_reader(fd: int) -> Callable[[], Awaitable[bytes]]:
    """Read stdin through the event loop when it can be polled; from a worker thread otherwise."""
    if _is_stream(fd):
        reader = asyncio.StreamReader(limit=2**16)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
        return lambda: reader.read(2**16)
    return lambda: anyio.to_thread.run_sync(os.read, fd, 2**16)


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

    def __init__(self, front: FastMCP, fast: FastPath, max_line_bytes: int) -> None:
        self.front = front
        self.fast = fast
        self.max_line_bytes = max_line_bytes
        self.legacy_version: str | None = None
        self._initialize_ids: set[Any] = set()
        self._write: Any = None
        self._in_flight: set[asyncio.Task[None]] = set()  # fast-path calls accepted and not answered yet
        self._by_id: dict[Any, asyncio.Task[None]] = {}  # the same, by request id (a later duplicate id wins)
        self._idle: asyncio.Event | None = None  # set when the last of them is answered (waited on at EOF)
        self.replies = Replies()  # relayed requests awaiting the client's answer
        self.client_capabilities: Any = None  # from the client's `initialize`
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
        read_chunk = await _chunk_reader(wire_in)
        self._write = await _line_writer(wire_out)
        to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](16)
        lowlevel = framework.lowlevel(self.front)
        try:
            async with framework.lifespan(self.front), anyio.create_task_group() as group:
                options = lowlevel.create_initialization_options()
                group.start_soon(lambda: lowlevel.run(server_reads, server_writes, options))
                group.start_soon(self._relay_server_output, from_server)
                async with to_server:
                    with anyio.CancelScope() as self._reading:  # stop() cancels it: no more input is read
                        if not self._stopping:
                            async for line in self._lines(read_chunk):
                                await self._dispatch(line, to_server)
                # stdin closed: let the calls already accepted finish (bounded), then stop.
                with anyio.move_on_after(self.fast.hub.settings.call_timeout):
                    while self._in_flight:
                        self._idle = asyncio.Event()
                        await self._idle.wait()
                group.cancel_scope.cancel()
        finally:  # what is still running (past the bound, or serving was cancelled) is cancelled with it
            if calls := list(self._in_flight):
                for task in calls:
                    task.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(calls)

    async def _lines(self, read_chunk: Callable[[], Awaitable[bytes]]) -> Any:
        """Yield each line; answer an over-long one with an error and skip it."""
        buffer = bytearray()
        discarding = False
        while chunk := await read_chunk():
            buffer += chunk
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                line = bytes(buffer[start:end])
                start = end + 1
                if discarding:
                    discarding = False
                elif line.strip():
                    yield line
            del buffer[:start]
            if len(buffer) > self.max_line_bytes:
                if not discarding:
                    too_long = jsonrpc.Malformed(jsonrpc.INVALID_REQUEST, f"message over {self.max_line_bytes} bytes")
                    self.send(too_long.response)
                buffer.clear()
                discarding = True
        if buffer.strip() and not discarding:
            yield bytes(buffer)

    async def _dispatch(self, line: bytes, to_server: Any) -> None:
        try:
            message = jsonrpc.decode(line)
        except jsonrpc.Malformed as error:
            self.send(error.response)
            return
        cancelled = cancelled_request_id(message)
        if cancelled is not None and self._cancel(cancelled):
            return
        if self.replies and self.replies.take(self, message):
            return
        if is_fast_candidate(message):
            modern = modern_version(message) is not None
            if modern or self.legacy_version is not None:
                # A plain asyncio task (the stdio front runs on asyncio): an anyio task group's spawn costs a
                # cancel scope and several look-ups per call, and so would a cancel scope per call (~7 µs): a
                # `notifications/cancelled` cancels the task itself (`_cancel`). Counted and cancellable now, so
                # EOF or a cancellation right after still finds it.
                task = asyncio.get_running_loop().create_task(self._answer_fast(message, modern))
                self._in_flight.add(task)
                self._by_id[message["id"]] = task
                task.add_done_callback(functools.partial(self._answered, message["id"]))
                return
        try:
            parsed = mcp_types.jsonrpc_message_adapter.validate_python(message, by_name=False)
        except Exception:
            request_id = message.get("id") if isinstance(message, dict) else None
            invalid = jsonrpc.Malformed(jsonrpc.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
            invalid.request_id = request_id
            self.send(invalid.response)
            return
        if isinstance(message, dict) and message.get("method") == "initialize":
            self._initialize_ids.add(message.get("id"))
            self.client_capabilities = declared_capabilities(message)
        await to_server.send(SessionMessage(parsed))

    def _cancel(self, request_id: Any) -> bool:
        """Cancel the fast-path call `request_id` (it sends no response; the backend is sent
        `notifications/cancelled`); False when no such call is running here."""
        task = self._by_id.get(request_id) if isinstance(request_id, str | int | float) else None
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def _answer_fast(self, message: dict[str, Any], modern: bool) -> None:
        if not modern:  # handshake era: the backend may ask this client things during the call
            ask = functools.partial(self.replies.ask, self, self.send)  # answered on stdin, see _dispatch
            CURRENT_PEER.set(ClientPeer(self, self.send, ask, self.client_capabilities, self.front))  # this task's own
        try:
            response = await self.fast.answer(message, modern=modern, post=self.send)
        except Exception:  # a bug, not the call's outcome: the client still gets an answer for its id
            logger.exception("answering %s failed", message["method"])
            response = {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32603, "message": "Internal error"}}
        if response is not None:
            self.send(response)

    def _answered(self, request_id: Any, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._by_id.get(request_id) is task:
            del self._by_id[request_id]
        if not task.cancelled() and (error := task.exception()) is not None:  # e.g. stdout is gone
            logger.warning("answering a call failed: %s", error)
        if not self._in_flight and self._idle is not None:
            self._idle.set()

    async def _relay_server_output(self, from_server: Any) -> None:
        async with from_server:
            async for session_message in from_server:
                data = session_message.message.model_dump(by_alias=True, mode="json", exclude_unset=True)
                if data.get("id") in self._initialize_ids and "result" in data:
                    self._initialize_ids.discard(data["id"])
                    self.legacy_version = data["result"].get("protocolVersion")
                self.send(data)

    async def announce_tools_changed(self) -> None:
        if self._write is not None and self.legacy_version is not None:
            for method in LIST_CHANGED:
                self.send({"jsonrpc": "2.0", "method": method})
