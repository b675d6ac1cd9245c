"""A stdio backend's pipes, shared by the SDK session and the hot path.

The SDK `ClientSession` runs on top (handshake, notifications, server-to-client requests, lists) through
an in-memory stream pair. Hot requests (`tools/call`) are written straight to the pipe under ids of
their own (`gw-N`, which the SDK never mints) and their answers are picked off the child's stdout as it
arrives (`_Wire.pipe_data_received`, a subprocess protocol, no stream reader and no read-loop task): one
JSON parse and one future resolved per call. Only what the SDK session reads goes through a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from gateway.backends.spawn import Child, Wire
from gateway.ops.codec import DecodeError, dumps, loads, whole_lines

logger = logging.getLogger("mcp_gateway.pipe")

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
_ID_PREFIX = "gw-"
_MAX_LINE = 2**27


class PipeClosed(Exception):
    """The backend process closed its stdout (it exited or crashed)."""


class StdioPipe:
    """One backend child process and the demultiplexing of its stdout."""

    def __init__(self, transport: asyncio.SubprocessTransport, wire: Wire) -> None:
        self.transport = transport
        self.pid = transport.get_pid()
        stdin, stdout = transport.get_pipe_transport(0), transport.get_pipe_transport(1)
        assert stdin is not None and stdout is not None  # both are pipes (asyncio's or uvloop's transports)
        self._stdin, self._stdout = cast(asyncio.WriteTransport, stdin), cast(asyncio.ReadTransport, stdout)
        self._wire = wire
        self._buffer = bytearray()
        self._for_session: asyncio.Queue[Any] = asyncio.Queue()  # lines the SDK session reads, then None at EOF
        self._paused = False
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._deadlines: dict[str, float] = {}  # loop time by which each pending call times out
        self._timer: asyncio.TimerHandle | None = None  # one for every pending call, at the soonest deadline
        self._timer_at = 0.0
        self._progress: dict[str, ProgressCallback] = {}
        self._reports: set[asyncio.Future[None]] = set()
        # Takes a log notification that arrives while hot calls are in flight, before their answers are
        # picked off this loop (so it reaches the call's client ahead of the result); False: not taken.
        self.on_log: Callable[[dict[str, Any]], bool] | None = None
        self.closed = False
        self._outgoing: list[bytes] = []
        self._loop = asyncio.get_running_loop()  # built in `open_pipe`, on the loop that serves every call
        self.grace = 2.0  # seconds the child has to exit after stdin closes, before SIGTERM (and as much again)

    # ------------------------------------------------------------------ hot path

    async def request(
        self, method: str, params: dict[str, Any], timeout: float, on_progress: ProgressCallback | None = None
    ) -> dict[str, Any]:
        """Send one request and wait for its result; `MCPError` for an error answer or a timeout."""
        if self.closed:
            raise PipeClosed("the backend process has exited")
        request_id = f"{_ID_PREFIX}{next(self._ids)}"
        if on_progress is not None:
            meta = dict(params.get("_meta") or {})
            meta["progressToken"] = request_id
            params = {**params, "_meta": meta}
            self._progress[request_id] = on_progress
        loop = self._loop
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request_id] = future
        deadline = self._deadlines[request_id] = loop.time() + timeout
        if self._timer is None or deadline < self._timer_at:  # one loop timer for all calls, not one each
            self._arm(deadline)
        try:
            self._send_line(dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
            try:
                message = await future
            except BaseException as error:
                timed_out = isinstance(error, TimeoutError)
                answered = not timed_out and future.done() and not future.cancelled()  # awaiting it cancels it
                if not answered and not self.closed:
                    reason = "timed out" if timed_out else "cancelled by the client"
                    self._write(
                        {
                            "jsonrpc": "2.0",
                            "method": "notifications/cancelled",
                            "params": {"requestId": request_id, "reason": reason},
                        }
                    )
                if timed_out:
                    raise MCPError(mcp_types.REQUEST_TIMEOUT, f"request timed out after {timeout:g} s") from None
                raise
        finally:
            self._pending.pop(request_id, None)
            self._deadlines.pop(request_id, None)
            self._progress.pop(request_id, None)
        if "error" in message:
            failed = message["error"] if isinstance(message["error"], dict) else {}
            raise MCPError(int(failed.get("code", -32603)), str(failed.get("message", "error")), failed.get("data"))
        result = message.get("result")
        if not isinstance(result, dict):
            raise MCPError(-32603, "the backend answered without a result object")
        return result

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(deadline, self._expire), deadline

    def _expire(self) -> None:
        """Fail the pending calls whose deadline has come (`request` sends the backend `notifications/cancelled`
        for each), and arm the timer again for the soonest one left. A call that finished is no longer here:
        the timer armed for it finds nothing due and moves on."""
        self._timer = None
        now = self._loop.time()
        soonest = None
        for request_id, deadline in self._deadlines.items():
            if deadline <= now:
                future = self._pending.get(request_id)
                if future is not None and not future.done():
                    future.set_exception(TimeoutError())
            elif soonest is None or deadline < soonest:
                soonest = deadline
        if soonest is not None:
            self._arm(soonest)

    def _write(self, message: dict[str, Any]) -> None:
        self._send_line(dumps(message))

    def _send_line(self, line: bytes) -> None:
        """Queue one line for the child's stdin; the lines queued during one turn of the event loop go out
        in one write (concurrent calls cost one system call and one wake-up of the child, not one each)."""
        outgoing = self._outgoing
        outgoing.append(line)
        if len(outgoing) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        lines, self._outgoing = self._outgoing, []
        if self._stdin.is_closing():
            return
        lines.append(b"")
        self._stdin.write(b"\n".join(lines))

    # ------------------------------------------------------------------ reading

    def _received(self, data: bytes) -> None:
        """Each whole line of stdout: a hot answer or progress is handled here, the rest queued for the SDK."""
        buffer = self._buffer
        for line in whole_lines(buffer, data):
            if line.strip():
                self._line(line)
        if len(buffer) > _MAX_LINE:
            logger.warning("backend output unreadable: a line over %d bytes", _MAX_LINE)
            buffer.clear()
            self._stdout.pause_reading()
            self._ended()

    def _line(self, line: bytes) -> None:
        try:
            message = loads(line)
        except DecodeError:
            logger.warning("backend wrote a line that is not JSON: %.200r", line)
            return
        if isinstance(message, dict) and self._take(message):
            return
        self._for_session.put_nowait(message)
        if self._for_session.qsize() >= 64 and not self._paused:  # the session is behind: stop reading a while
            self._paused = True
            self._stdout.pause_reading()

    def _ended(self) -> None:
        """stdout closed (the child exited or crashed): the calls waiting fail, the session reads EOF."""
        if self.closed:
            return
        if self._buffer.strip():
            self._line(bytes(self._buffer))
        self._buffer.clear()
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PipeClosed("the backend process exited during the call"))
        self._for_session.put_nowait(None)

    async def _session_loop(self, to_session: Any) -> None:
        """Hand the SDK session what it reads (in order), then EOF."""
        async with to_session:
            while (message := await self._for_session.get()) is not None:
                if self._paused and self._for_session.qsize() < 16:
                    self._paused = False
                    self._stdout.resume_reading()
                try:
                    parsed = mcp_types.jsonrpc_message_adapter.validate_python(message, by_name=False)
                except Exception as error:  # the session decides what to do with garbage
                    await to_session.send(error)
                    continue
                await to_session.send(SessionMessage(parsed))

    def _take(self, message: dict[str, Any]) -> bool:
        """Handle `message` if it answers a hot request or reports its progress."""
        request_id = message.get("id")
        if isinstance(request_id, str) and request_id.startswith(_ID_PREFIX) and "method" not in message:
            future = self._pending.get(request_id)
            if future is not None and not future.done():
                future.set_result(message)
            return True
        method = message.get("method")
        if method == "notifications/message" and self._pending and self.on_log is not None:
            return self.on_log(message)
        if method == "notifications/progress":
            params = message.get("params") or {}
            callback = self._progress.get(params.get("progressToken"))  # type: ignore[arg-type]
            if callback is not None:
                report = asyncio.ensure_future(
                    callback(params.get("progress", 0), params.get("total"), params.get("message"))
                )
                self._reports.add(report)  # held until it is done (the loop keeps only a weak reference)
                report.add_done_callback(self._reports.discard)
                return True
        return False

    async def _write_loop(self, from_session: Any) -> None:
        async with from_session:
            async for session_message in from_session:
                data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                self._send_line(data.encode())

    async def _wait(self) -> None:
        await asyncio.shield(self._wire.exited)  # shielded: a timeout around it must not cancel the future

    async def stop(self) -> None:
        """Close stdin, give the process a moment to exit, then terminate it (and its group)."""
        try:
            await self._stop()
        finally:
            if self.transport.get_returncode() is not None:
                self.transport.close()

    async def _stop(self) -> None:
        if self.transport.get_returncode() is not None:
            return
        with contextlib.suppress(Exception):
            self._stdin.close()
        with anyio.move_on_after(self.grace):
            await self._wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        with anyio.move_on_after(max(self.grace, 2)):
            await self._wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        await self._wait()


@asynccontextmanager
async def open_pipe(child: Child) -> AsyncIterator[tuple[StdioPipe, Any, Any]]:
    """Take the backend's child process (started by `gateway.backends.spawn.start`); yield the pipe and the
    (read, write) stream pair for an SDK `ClientSession`; stop the process on exit."""
    pipe = StdioPipe(child.transport, child.wire)
    child.wire.attach(pipe._received, pipe._ended)  # what it wrote before now (its exit, say) is handed over
    to_session, session_reads = anyio.create_memory_object_stream[SessionMessage | Exception](64)
    session_writes, from_session = anyio.create_memory_object_stream[SessionMessage](64)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(pipe._session_loop, to_session)
            group.start_soon(pipe._write_loop, from_session)
            try:
                yield pipe, session_reads, session_writes
            finally:
                group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await pipe.stop()
