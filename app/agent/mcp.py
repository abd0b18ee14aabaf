"""MCP servers as a source of tools: one `McpSource` per server of AGENT_MCP_CONFIG.

Each source keeps its session in one long-lived task that owns the transport's and the
session's context managers (anyio's cancel scopes must be left by the task that entered
them); callers share that session, whose requests the SDK correlates by id. A server that is
down, or goes away, takes its tools out of `specs()` and is reconnected in the background
with a growing delay; its tools are discovered again on every connection and when the server
says they changed (`notifications/tools/list_changed`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx2
import mcp_types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, RequestParamsMeta
from pydantic import ValidationError

from app.agent.mcp_content import result_text, tool_specs
from app.agent.tools import (
    SourceState,
    SourceStatus,
    ToolCallContext,
    ToolResult,
    ToolSource,
    ToolSpec,
)
from app.config import Settings
from app.mcp_config import HttpServer, McpServerConfig

logger = logging.getLogger(__name__)

STEP_ID_META_KEY = "agent_notify/step_id"
MAX_TOOL_PAGES = 100  # a server whose tools/list never ends still lets the service start
CLOSE_TIMEOUT_SECONDS = 10.0  # a stdio server gets 2 s after its stdin closes, then 2 s more
HTTP_READ_TIMEOUT_SECONDS = 300.0  # the SDK's own: a tool's answer may stream for a while

# The transports' stream pair (the SDK names its type only in a private module).
TransportStreams = AbstractAsyncContextManager[tuple[Any, Any]]


class McpSource:
    """One MCP server's tools (a `ToolSource`), named `<server>__<tool>` for the model."""

    kind = "mcp"

    def __init__(
        self,
        name: str,
        server: McpServerConfig,
        *,
        connect_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        ping_interval: float = 15.0,
    ) -> None:
        self.name = name
        self.server = server
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.ping_interval = ping_interval
        self._state: SourceState = "starting"
        self._error: str | None = None
        self._tools: dict[str, tuple[ToolSpec, str]] = {}  # model's name → (spec, server's name)
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._lost: str | None = None  # why the current session ended, when a call saw it
        self._relist = False
        self._connections = 0
        # Made in start(): anyio's primitives belong to the running event loop.
        self._wake: anyio.Event | None = None
        self._attempted: anyio.Event | None = None
        self._connecting: anyio.CancelScope | None = None

    # The ToolSource protocol.

    async def start(self) -> None:
        """Connect and discover the tools, waiting at most about `connect_timeout`; a server
        that is down leaves the source `down`, reconnecting in the background."""
        if self._task is not None:
            return
        self._wake = anyio.Event()
        self._attempted = anyio.Event()
        self._task = asyncio.create_task(self._run(), name=f"mcp:{self.name}")
        with anyio.move_on_after(self.connect_timeout + 1.0):
            await self._attempted.wait()

    async def close(self) -> None:
        """End the session (and a stdio server's process) and the task that held it."""
        self._closing = True
        self._signal()
        if self._session is None and self._connecting is not None:
            self._connecting.cancel()  # still connecting: nothing to end gracefully
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_SECONDS)
        if not done:
            logger.warning("MCP server %s did not close in time: cancelling", self.name)
            task.cancel()
            await asyncio.wait({task})

    def specs(self) -> Sequence[ToolSpec]:
        return [spec for spec, _ in self._tools.values()]

    def status(self) -> SourceStatus:
        return SourceStatus(
            state=self._state,
            tools=len(self._tools),
            error=self._error,
            detail={"transport": self.server.transport},
        )

    async def call(
        self, name: str, arguments: Mapping[str, object], context: ToolCallContext
    ) -> ToolResult:
        session, found = self._session, self._tools.get(name)
        if session is None or found is None:
            why = f": {self._error}" if self._error else ""
            return ToolResult.error(f"the MCP server {self.name} does not offer {name} now{why}")
        tool = found[1]
        # An open map (`extra_items=Any`), which mypy does not know yet.
        meta = cast(RequestParamsMeta, {STEP_ID_META_KEY: context.step_id})
        try:
            result = await session.call_tool(tool, dict(arguments), meta=meta)
        except MCPError as exc:
            if exc.error.code != CONNECTION_CLOSED:
                return ToolResult.error(f"the MCP server {self.name} refused: {exc.error.message}")
            reason = exc.error.message
        except (RuntimeError, ValidationError) as exc:
            # The SDK checked the answer against the tool's output schema or the protocol.
            return ToolResult.error(f"the MCP server {self.name} answered wrongly: {exc}")
        except Exception as exc:
            reason = error_text(exc)
        else:
            return result_text(result)
        self._session_lost(session, reason)
        return ToolResult.error(
            f"the MCP server {self.name} went away during the call ({reason}); "
            "it may or may not have run the tool"
        )

    # The task that holds the session.

    async def _run(self) -> None:
        delay = self.backoff_initial
        while not self._closing:
            connections = self._connections
            try:
                await self._connect_and_serve()
            except Exception as exc:
                self._went_down(error_text(exc))
            except BaseExceptionGroup as group:
                # A transport's task group may fail with its own cancellations among the
                # errors: a failure like any other, unless this task is being cancelled.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                self._went_down(error_text(group))
            finally:
                self._session = None
                if self._attempted is not None:
                    self._attempted.set()
            if self._closing:
                break
            delay = self.backoff_initial if self._connections > connections else delay
            logger.debug("MCP server %s: reconnecting in %.1f s", self.name, delay)
            await self._pause(delay)
            delay = min(delay * 2, self.backoff_max)
        self._tools, self._state, self._error = {}, "down", "closed"

    async def _connect_and_serve(self) -> None:
        """One session, from connecting to its end; returns when it ends for a reason already
        recorded (closing, or a call that saw the connection go), raises otherwise."""
        self._lost, self._relist = None, False
        with anyio.CancelScope(deadline=anyio.current_time() + self.connect_timeout) as scope:
            self._connecting = scope
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(await self._transport(stack))
                session = await stack.enter_async_context(
                    ClientSession(read, write, message_handler=self._on_message)
                )
                await session.initialize()
                await self._discover(session)
                scope.deadline = math.inf  # connected: from now on the session lasts
                self._session = session
                self._went_up()
                await self._serve(session)
        self._connecting = None
        if scope.cancelled_caught and not self._closing:
            raise TimeoutError(f"no answer within {self.connect_timeout:g} s")

    async def _transport(self, stack: AsyncExitStack) -> TransportStreams:
        server = self.server
        if isinstance(server, HttpServer):
            client = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=server.headers,
                    timeout=httpx2.Timeout(self.connect_timeout, read=HTTP_READ_TIMEOUT_SECONDS),
                )
            )
            return streamable_http_client(str(server.url), http_client=client)
        parameters = StdioServerParameters(
            command=server.command, args=server.args, env=server.env or None, cwd=server.cwd
        )
        return stdio_client(parameters)

    async def _serve(self, session: ClientSession) -> None:
        """Until closing or a lost connection: rediscover the tools when told they changed,
        and ping the server when idle, so that a server gone quiet is noticed."""
        while True:
            wake = self._wake = anyio.Event()
            if self._closing or self._lost is not None:
                return
            if self._relist:
                self._relist = False
                await self._discover(session)
                continue
            with anyio.move_on_after(self.ping_interval) as idle:
                await wake.wait()
            if idle.cancelled_caught:
                with anyio.fail_after(self.connect_timeout):
                    await session.send_ping()

    async def _discover(self, session: ClientSession) -> None:
        tools: list[types.Tool] = []
        params: types.PaginatedRequestParams | None = None
        for _ in range(MAX_TOOL_PAGES):
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            if not page.next_cursor:
                break
            params = types.PaginatedRequestParams(cursor=page.next_cursor)
        else:
            logger.warning("MCP server %s: more than %d pages of tools", self.name, MAX_TOOL_PAGES)
        self._tools = tool_specs(self.name, tools)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._relist = True
            self._signal()
        elif isinstance(message, Exception):
            logger.debug("MCP server %s: transport error %s", self.name, error_text(message))

    async def _pause(self, seconds: float) -> None:
        wake = self._wake = anyio.Event()
        if self._closing:
            return
        with anyio.move_on_after(seconds):
            await wake.wait()

    def _signal(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # State changes, each logged once.

    def _went_up(self) -> None:
        self._connections += 1
        logger.info("MCP server %s is up: %d tools", self.name, len(self._tools))
        self._state, self._error = "up", None
        if self._attempted is not None:
            self._attempted.set()

    def _went_down(self, reason: str) -> None:
        self._session, self._tools = None, {}
        if self._state != "down":
            logger.warning(
                "MCP server %s is down (%s): its tools are unavailable; reconnecting in the "
                "background",
                self.name,
                reason,
            )
        self._state, self._error = "down", reason

    def _session_lost(self, session: ClientSession, reason: str) -> None:
        if session is self._session:
            self._lost = reason
            self._went_down(reason)
            self._signal()


def error_text(exc: BaseException) -> str:
    """What went wrong, in a line: the first leaf of an exception group, an MCP error's
    message, or the exception's type and text."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.error.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def mcp_sources(settings: Settings) -> list[McpSource]:
    """A source for each server of AGENT_MCP_CONFIG (none when unset), not yet started."""
    config = settings.agent_mcp_config
    if config is None:
        return []
    return [McpSource(name, server) for name, server in config.servers.items()]


def mcp_statuses(sources: Iterable[McpSource]) -> dict[str, SourceStatus]:
    """Each MCP server's state by name, for `/readyz` details and `GET /agent`."""
    return {source.name: source.status() for source in sources}


if TYPE_CHECKING:  # mypy checks that the class keeps to the protocol
    _IS_A_TOOL_SOURCE: type[ToolSource] = McpSource
