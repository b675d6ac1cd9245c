"""A stdio backend's pipes, shared by the SDK session and the hot path.

The SDK `ClientSession` runs on top (handshake, notifications, server-to-client requests, lists) through
an in-memory stream pair. Hot requests (`tools/call`) are written straight to the pipe under ids of
their own (`gw-N`, which the SDK never mints) and their answers are picked off the read loop before
any model is built: one JSON parse and one future per call, instead of several task hops.
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
from typing import Any

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from gateway.ops.codec import DecodeError, dumps, loads

logger = logging.getLogger("mcp_gateway.pipe")

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
_ID_PREFIX = "gw-"


def _expire(future: asyncio.Future[dict[str, Any]]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class PipeClosed(Exception):
    """The backend process closed its stdout (it exited or crashed)."""


class StdioPipe:
    """One backend child process and the demultiplexing of its stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._progress: dict[str, ProgressCallback] = {}
        self._reports: set[asyncio.Future[None]] = set()
        # Takes a log notification that arrives while hot calls are in flight, before their answers are
        # picked off this loop (so it reaches the call's client ahead of the result); False: not taken.
        self.on_log: Callable[[dict[str, Any]], bool] | None = None
        self.closed = False
        self._outgoing: list[bytes] = []
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request_id] = future
        timer = loop.call_later(timeout, _expire, future)  # a timer, not a cancel scope: one handle per call
        try:
            self._write({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
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
            timer.cancel()
            self._pending.pop(request_id, None)
            self._progress.pop(request_id, None)
        if "error" in message:
            failed = message["error"] if isinstance(message["error"], dict) else {}
            raise MCPError(int(failed.get("code", -32603)), str(failed.get("message", "error")), failed.get("data"))
        result = message.get("result")
        if not isinstance(result, dict):
            raise MCPError(-32603, "the backend answered without a result object")
        return result

    def _write(self, message: dict[str, Any]) -> None:
        self._send_line(dumps(message))

    def _send_line(self, line: bytes) -> None:
        """Queue one line for the child's stdin; the lines queued during one turn of the event loop go out
        in one write (concurrent calls cost one system call and one wake-up of the child, not one each)."""
        self._outgoing.append(line)
        if len(self._outgoing) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        lines, self._outgoing = self._outgoing, []
        if self.proc.stdin is None or self.proc.stdin.is_closing():
            return
        lines.append(b"")
        self.proc.stdin.write(b"\n".join(lines))

    # ------------------------------------------------------------------ read loop

    async def _read_loop(self, to_session: Any) -> None:
        """Route each line of stdout: hot answers and progress here, the rest to the SDK session."""
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    message = loads(line)
                except DecodeError:
                    logger.warning("backend wrote a line that is not JSON: %.200r", line)
                    continue
                if isinstance(message, dict) and self._take(message):
                    continue
                try:
                    parsed = mcp_types.jsonrpc_message_adapter.validate_python(message, by_name=False)
                except Exception as error:  # the session decides what to do with garbage
                    await to_session.send(error)
                    continue
                await to_session.send(SessionMessage(parsed))
        except (ValueError, asyncio.LimitOverrunError) as error:
            logger.warning("backend output unreadable: %s", error)
        finally:
            self.closed = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(PipeClosed("the backend process exited during the call"))
            await to_session.aclose()

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

    async def stop(self) -> None:
        """Close stdin, give the process a moment to exit, then terminate it (and its group)."""
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with anyio.move_on_after(self.grace):
            await self.proc.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with anyio.move_on_after(max(self.grace, 2)):
            await self.proc.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()


@asynccontextmanager
async def open_pipe(proc: asyncio.subprocess.Process) -> AsyncIterator[tuple[StdioPipe, Any, Any]]:
    """Take the backend's child process (started by `gateway.backends.spawn.start`); yield the pipe and the
    (read, write) stream pair for an SDK `ClientSession`; stop the process on exit."""
    pipe = StdioPipe(proc)
    to_session, session_reads = anyio.create_memory_object_stream[SessionMessage | Exception](64)
    session_writes, from_session = anyio.create_memory_object_stream[SessionMessage](64)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(pipe._read_loop, to_session)
            group.start_soon(pipe._write_loop, from_session)
            try:
                yield pipe, session_reads, session_writes
            finally:
                group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await pipe.stop()
