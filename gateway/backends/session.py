"""One persistent, supervised MCP session to one backend server.

The session is opened once at start-up and shared by every call: the SDK's JSON-RPC dispatcher
multiplexes concurrent requests on it by id. When the backend exits, the supervisor marks it down,
fails nothing but the calls in flight, and reconnects with exponential backoff.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Literal, TextIO

import anyio
import httpx2
import mcp_types
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from gateway.backends import sdk, spawn
from gateway.backends.era import ClientEra
from gateway.backends.inflight import CURRENT_PEER, InFlight
from gateway.backends.pipe import PipeClosed, ProgressCallback, StdioPipe, open_pipe
from gateway.backends.rounds import InputRound
from gateway.config.loader import GatewaySettings, ServerConfig

logger = logging.getLogger("mcp_gateway.backend")

State = Literal["starting", "up", "down"]
ChangeCallback = Callable[["Backend"], Awaitable[None]]
ResourceUpdatedCallback = Callable[["Backend", str], Awaitable[None]]


_LIST_CHANGED = (
    mcp_types.ToolListChangedNotification,
    mcp_types.PromptListChangedNotification,
    mcp_types.ResourceListChangedNotification,
)


# the client capability each of the session's request handlers declares to the backend
_CAPABILITY_HANDLERS = {
    "sampling": "sampling_callback",
    "elicitation": "elicitation_callback",
    "roots": "list_roots_callback",
}


class BackendUnavailable(Exception):
    """The backend has no live session right now, or lost it during the call."""


class BackendRestarting(BackendUnavailable):
    """The backend is down and its supervisor is bringing it back: the call was not sent (not a failure of
    the backend that a circuit breaker should count)."""


class _WatchedStream:
    """A receive stream that sets an event when the transport closes (EOF)."""

    def __init__(self, inner: Any, closed: anyio.Event) -> None:
        self._inner = inner
        self._closed = closed

    async def __aenter__(self) -> _WatchedStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> Any:
        self._closed.set()
        return await self._inner.__aexit__(*exc)

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError, anyio.EndOfStream):
            self._closed.set()
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Backend:
    """A named backend server and its persistent session."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        settings: GatewaySettings,
        on_change: ChangeCallback | None = None,
        stderr: Callable[[str], TextIO] | None = None,
        era: ClientEra | None = None,
    ) -> None:
        self.name = name
        self.era = era  # over stdio, the one client's era: each session waits for it and speaks it
        self.stderr = stderr or (lambda name: sys.stderr)  # where a stdio child's stderr goes, by backend name
        self.config = config
        self.settings = settings
        self.on_change = on_change
        self.state: State = "starting"
        self.last_error: str | None = None
        self.startup_ms: float | None = None
        self.restarts = 0
        self.sessions_opened = 0  # sessions that completed their handshake and lists (1 after the first start)
        self.tools: list[dict[str, Any]] = []
        self.resources: list[mcp_types.Resource] = []
        self.resource_templates: list[mcp_types.ResourceTemplate] = []
        self.prompts: list[mcp_types.Prompt] = []
        self.session: ClientSession | None = None
        self.modern = False
        self._pipe: StdioPipe | None = None
        self._envelope: tuple[ClientSession, dict[str, Any]] | None = None  # a session's `_meta` stamp
        self.in_flight = InFlight()  # the calls being served, for relaying the backend's requests and logs
        self.on_resource_updated: ResourceUpdatedCallback | None = None
        self.ready = anyio.Event()  # set once the first start has succeeded or failed
        self._up = anyio.Event()  # set while the session is up
        self.exit_grace = 2.0  # a stdio child's time to exit on its own when the session closes
        self._refresh_requested = anyio.Event()
        self._spawned: spawn.Child | None = None

    def adopt(self, proc: spawn.Child) -> None:
        """Use `proc`, a child the caller started with `gateway.backends.spawn.start` for this backend's
        config, for the first start instead of spawning one (restarts spawn their own)."""
        self._spawned = proc

    @property
    def namespace(self) -> str:
        """The prefix of this backend's exposed names: `namespace` from the config, else the server name."""
        return self.name if self.config.namespace is None else self.config.namespace

    @property
    def transport(self) -> str:
        return self.config.kind

    # ------------------------------------------------------------------ connection

    @asynccontextmanager
    async def _open_streams(self, closed: anyio.Event) -> AsyncIterator[tuple[Any, Any]]:
        config = self.config
        if config.kind == "stdio":
            proc, self._spawned = self._spawned, None  # started by the CLI (`adopt`): the first start only
            if proc is None:
                proc = await spawn.start(config, self.stderr(self.name))
            async with open_pipe(proc) as (pipe, reads, writes):
                self._pipe = pipe
                pipe.grace = self.exit_grace
                pipe.on_log = self.in_flight.forward_notification
                try:
                    yield _WatchedStream(reads, closed), writes
                finally:
                    self._pipe = None
            return
        if config.kind == "sse":
            assert config.url is not None
            context: AbstractAsyncContextManager[Any] = sse_client(
                config.url, headers=config.headers or None, timeout=self.settings.startup_timeout
            )
        else:
            assert config.url is not None
            client = httpx2.AsyncClient(
                headers=config.headers,
                timeout=httpx2.Timeout(self.settings.call_timeout + 5, read=None),
                limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64),
            )
            context = streamable_http_client(config.url, http_client=client)
        async with context as (read_stream, write_stream):
            yield _WatchedStream(read_stream, closed), write_stream

    @asynccontextmanager
    async def _open_session(self, closed: anyio.Event) -> AsyncIterator[ClientSession]:
        if self.config.kind == "in-process":
            from fastmcp.client.transports import FastMCPTransport

            # The server reads its settings from the environment, as it would as a child process.
            os.environ.update({key: value for key, value in self.config.env.items() if value})
            # Imported in a thread: the event loop keeps serving (and other backends keep starting) meanwhile.
            module = await anyio.to_thread.run_sync(importlib.import_module, f"{self.config.module}.server")
            transport = FastMCPTransport(module.create_server())
            async with transport.connect_session(**self._session_callbacks()) as session:
                yield session
            return
        async with (
            self._open_streams(closed) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream, **self._session_callbacks()) as session,
        ):
            yield session

    def _session_callbacks(self) -> dict[str, Any]:
        """The session's handlers; the SDK declares a client capability for each request handler given. Over
        stdio to a handshake-era client, only those the client declared (`gateway.backends.era`)."""
        callbacks: dict[str, Any] = {
            "message_handler": self._on_message,
            "sampling_callback": self._on_sampling,
            "elicitation_callback": self._on_elicitation,
            "list_roots_callback": self._on_list_roots,
            "logging_callback": self._on_log,
        }
        declared = self.era.capabilities if self.era is not None else None
        if declared is not None:
            for capability, handler in _CAPABILITY_HANDLERS.items():
                if not isinstance(declared.get(capability), dict):
                    del callbacks[handler]
            if isinstance(sampling := declared.get("sampling"), dict):
                with contextlib.suppress(ValidationError):  # an odd declaration: plain sampling
                    callbacks["sampling_capabilities"] = mcp_types.SamplingCapability.model_validate(sampling)
        return callbacks

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, _LIST_CHANGED):
            self._refresh_requested.set()
        elif isinstance(message, mcp_types.ResourceUpdatedNotification):
            if self.on_resource_updated is not None:
                await self.on_resource_updated(self, str(message.params.uri))
        elif isinstance(message, Exception):
            logger.warning("backend %s: transport error: %s", self.name, message)

    # ------------------------------------------------------------------ relayed to the calling client

    async def _relay(self, method: str, params: Any, *result_types: Any) -> Any:
        raw = params.model_dump(by_alias=True, mode="json", exclude_none=True) if params is not None else None
        timeout = self.config.timeout or self.settings.call_timeout
        result = await self.in_flight.forward_request(self.name, method, raw, timeout)
        if isinstance(result, mcp_types.ErrorData):
            return result
        for result_type in result_types:
            try:
                return result_type.model_validate(result)
            except ValidationError:
                continue
        return mcp_types.ErrorData(code=mcp_types.INTERNAL_ERROR, message=f"the client's '{method}' result is invalid")

    async def _on_sampling(self, context: ClientRequestContext, params: mcp_types.CreateMessageRequestParams) -> Any:
        return await self._relay(
            "sampling/createMessage", params, mcp_types.CreateMessageResult, mcp_types.CreateMessageResultWithTools
        )

    async def _on_elicitation(self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams) -> Any:
        return await self._relay("elicitation/create", params, mcp_types.ElicitResult)

    async def _on_list_roots(self, context: ClientRequestContext) -> Any:
        return await self._relay("roots/list", None, mcp_types.ListRootsResult)

    async def _on_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        message = {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": params.model_dump(by_alias=True, mode="json", exclude_none=True),
        }
        if not self.in_flight.forward_notification(message):
            logger.debug("backend %s log (no client to relay it to): %s", self.name, params.data)

    async def _list_all(self, session: ClientSession) -> None:
        """Fetch tools, resources and prompts (every page) into the cached lists."""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            result = await session.list_tools(params=params)
            tools.extend(t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in result.tools)
            cursor = result.next_cursor
            if not cursor:
                break
        self.tools = tools
        capabilities = session.server_capabilities
        self.resources, self.resource_templates, self.prompts = [], [], []
        if capabilities is not None and capabilities.resources is not None:
            self.resources = list((await session.list_resources()).resources)
            self.resource_templates = list((await session.list_resource_templates()).resource_templates)
        if capabilities is not None and capabilities.prompts is not None:
            self.prompts = list((await session.list_prompts()).prompts)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep a session open for as long as the gateway runs; reconnect with backoff when it dies."""
        backoff = self.settings.restart_backoff_initial
        started = False
        while True:
            closed = anyio.Event()
            began = time.perf_counter()
            try:
                # over stdio, the client's era (and what it can be asked), once it has said: its first request
                # (a child started meanwhile)
                handshake_first = self.era is not None and not await self.era.wait()
                began = time.perf_counter()
                async with AsyncExitStack() as stack:
                    # Task groups open inside this context, so no cancel scope may wrap its entry.
                    session = await stack.enter_async_context(self._open_session(closed))
                    with anyio.fail_after(self.settings.startup_timeout):
                        await sdk.negotiate(session, handshake_first=handshake_first)
                        await self._list_all(session)
                    self.session = session
                    self.modern = session.discover_result is not None  # negotiated the 2026 era
                    self.state = "up"
                    self.sessions_opened += 1
                    self.last_error = None
                    self.startup_ms = (time.perf_counter() - began) * 1000
                    backoff = self.settings.restart_backoff_initial
                    logger.info("backend %s up (%d tools, %.0f ms)", self.name, len(self.tools), self.startup_ms)
                    self._up.set()
                    self.ready.set()
                    if not started:
                        started = True
                        task_status.started()
                    await self._notify_change()
                    await self._serve_until_closed(session, closed)
                    raise BackendUnavailable("the backend closed its connection")
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as error:
                self._mark_down(error)
            if not started:
                started = True
                task_status.started()
            self.ready.set()
            await self._notify_change()
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.restart_backoff_max)
            self.restarts += 1
            self.state = "starting"

    async def _serve_until_closed(self, session: ClientSession, closed: anyio.Event) -> None:
        async with anyio.create_task_group() as group:

            async def refresh_on_request() -> None:
                while True:
                    await self._refresh_requested.wait()
                    self._refresh_requested = anyio.Event()
                    try:
                        await self._list_all(session)
                    except Exception as error:
                        logger.warning("backend %s: refreshing lists failed: %s", self.name, error)
                        continue
                    logger.info("backend %s: lists changed (%d tools)", self.name, len(self.tools))
                    await self._notify_change()

            group.start_soon(refresh_on_request)
            await closed.wait()
            group.cancel_scope.cancel()

    def _mark_down(self, error: BaseException) -> None:
        self.session = None
        if self._up.is_set():
            self._up = anyio.Event()
        self.state = "down"
        self.last_error = _describe_error(error)
        logger.warning("backend %s down: %s", self.name, self.last_error)

    async def _notify_change(self) -> None:
        if self.on_change is not None:
            await self.on_change(self)

    # ------------------------------------------------------------------ calls

    async def _live_session(self) -> ClientSession:
        """The session; during the first start, wait for it (bounded by `startup_timeout`); while the
        supervisor restarts the backend, `BackendRestarting` at once."""
        session = self.session
        if session is not None and self.state == "up":
            return session
        if not self.ready.is_set():  # still starting for the first time: the call waits for it
            with anyio.move_on_after(self.settings.startup_timeout):
                await self._up.wait()
            session = self.session
            if session is not None and self.state == "up":
                return session
        detail = f" (last error: {self.last_error})" if self.last_error else ""
        raise BackendRestarting(f"backend '{self.name}' is restarting{detail}")

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Send one request on the shared session and return the raw result dict.

        This is the hot path: no model round-trips, just the SDK dispatcher's id correlation. A 2026-era
        backend's `input_required` is returned like any result (`gateway.backends.rounds` answers it).
        Raises `MCPError` for a JSON-RPC error answer and `BackendUnavailable` when the session is gone.
        """
        session = self.session
        if session is None or self.state != "up":
            session = await self._live_session()
        options: dict[str, Any] = {"timeout": timeout or self.config.timeout or self.settings.call_timeout}
        pipe = self._pipe if method == "tools/call" else None
        if pipe is not None:  # the pipe has no headers: the session's `_meta` stamp, taken once per session
            params = self._stamped(session, params or {})
        else:
            params = sdk.stamp(session, method, dict(params) if params else {}, options)
        peer = CURRENT_PEER.get()  # the client to relay this call's sampling/elicitation/logs to
        token = None
        if peer is not None:
            token = self.in_flight.enter(peer)
            if self.modern and (level := peer.log_level) is not None:  # 2026 era: logs are opted into per request
                params["_meta"] = {**params.get("_meta", {}), mcp_types.LOG_LEVEL_META_KEY: level}
        if on_progress is not None and pipe is None:
            options["on_progress"] = on_progress
        try:
            if pipe is not None:
                return await pipe.request(method, params, options["timeout"], on_progress)
            return await sdk.dispatch(session, method, params, options)
        except PipeClosed:
            raise BackendUnavailable(f"backend '{self.name}' closed the connection during the call") from None
        except MCPError as error:
            if error.code == mcp_types.CONNECTION_CLOSED:
                raise BackendUnavailable(f"backend '{self.name}' closed the connection during the call") from None
            raise
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, httpx2.TransportError) as error:
            raise BackendUnavailable(f"backend '{self.name}' is unreachable: {_describe_error(error)}") from None
        finally:
            if token is not None:
                self.in_flight.leave(token)

    def _stamped(self, session: ClientSession, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with `session`'s era stamp in its `_meta`, as `sdk.stamp` puts it (the stamp's keys win,
        but a log level the request sets itself)."""
        if self._envelope is None or self._envelope[0] is not session:
            self._envelope = (session, sdk.envelope(session, "tools/call"))
        stamp = self._envelope[1]
        own = params.get("_meta")
        meta = {**own, **stamp} if own else dict(stamp)
        if own and mcp_types.LOG_LEVEL_META_KEY in own:
            meta[mcp_types.LOG_LEVEL_META_KEY] = own[mcp_types.LOG_LEVEL_META_KEY]
        return {**params, "_meta": meta}

    def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        echo: InputRound | None = None,
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        """`request` of a `tools/call` (awaited by the caller: no coroutine of its own on the hot path)."""
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        if meta:
            params["_meta"] = meta
        if echo is not None:  # a retry after `input_required`: the client's answers and the backend's state
            params.update(echo.wire())
        return self.request("tools/call", params, timeout=timeout, on_progress=on_progress)


def _describe_error(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        leaves = [_describe_error(e) for e in error.exceptions]
        return "; ".join(leaves)
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error) or type(error).__name__
    return text if len(text) < 300 else text[:297] + "..."
