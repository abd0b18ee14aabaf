"""MCP servers as a source of tools, against a real MCP server (the SDK's `MCPServer`, in
tests/fakes/mcp_server.py) over streamable HTTP and over stdio: discovery, calls, the step id
in `_meta`, failures and timeouts as results, servers that are down, come up, and die."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from app.agent import Toolbox, ToolCallContext
from app.agent.mcp import McpSource
from app.mcp_config import HttpServer, McpServerConfig, StdioServer
from tests.fakes.mcp_server import ROOT, STDIO_COMMAND, McpHttpProcess
from tests.helpers import eventually

CONTEXT = ToolCallContext(step_id="step-7f3a", workflow_key="msg-123")
FAKE_TOOLS = {
    "fake__add",
    "fake__echo_meta",
    "fake__fail",
    "fake__slow",
    "fake__grow",
    "fake__pid",
    "fake__crash",
}
# Fast retries, so that the tests see a reconnection within a second.
QUICK = {"connect_timeout": 5.0, "backoff_initial": 0.05, "backoff_max": 0.2}


@pytest.fixture(scope="module")
def http_server() -> Iterator[McpHttpProcess]:
    server = McpHttpProcess()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def stopped_http_server() -> Iterator[McpHttpProcess]:
    """A server of its own on a free port, started (and killed) by the test."""
    server = McpHttpProcess()
    yield server
    server.kill()


def stdio_server() -> StdioServer:
    return StdioServer(command=STDIO_COMMAND[0], args=STDIO_COMMAND[1:], cwd=ROOT)


@pytest.fixture
async def make_source() -> AsyncIterator[Callable[[McpServerConfig], McpSource]]:
    """Makes sources (not started); closes them all after the test."""
    made: list[McpSource] = []

    def make(server: McpServerConfig) -> McpSource:
        made.append(McpSource("fake", server, **QUICK))
        return made[-1]

    yield make
    await asyncio.gather(*(source.close() for source in made))


@pytest.fixture(params=["http", "stdio"])
async def source(
    request: pytest.FixtureRequest, make_source: Callable[[McpServerConfig], McpSource]
) -> McpSource:
    """A started source over each transport."""
    if request.param == "http":
        server: McpServerConfig = HttpServer(url=request.getfixturevalue("http_server").url)
    else:
        server = stdio_server()
    started = make_source(server)
    await started.start()
    assert started.status().state == "up"  # start() returns once it is up
    return started


async def until(condition: Callable[[], bool]) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe, bool)


async def test_tools_are_discovered_with_prefixed_names_and_schemas(source: McpSource) -> None:
    assert source.status().state == "up"
    assert source.status().tools == len(FAKE_TOOLS)
    specs = {spec.name: spec for spec in source.specs()}
    assert set(specs) == FAKE_TOOLS
    add = specs["fake__add"]
    assert add.source == "mcp:fake"
    assert add.description == "Add two numbers."
    assert add.parameters["type"] == "object"
    assert set(add.parameters["properties"]) == {"a", "b"}
    assert add.parameters["required"] == ["a", "b"]


async def test_a_call_returns_the_tools_answer(source: McpSource) -> None:
    result = await source.call("fake__add", {"a": 2, "b": 40}, CONTEXT)
    assert result.is_error is False
    assert result.content == "42.0"


async def test_the_step_id_arrives_in_the_requests_meta(source: McpSource) -> None:
    result = await source.call("fake__echo_meta", {}, CONTEXT)
    assert result.content == "step-7f3a"


async def test_a_tool_that_fails_gives_an_error_result(source: McpSource) -> None:
    result = await source.call("fake__fail", {}, CONTEXT)
    assert result.is_error is True
    assert "the fake tool failed on purpose" in result.content
    assert source.status().state == "up"  # the tool failed, not the server


async def test_a_tool_past_the_timeout_gives_an_error_result_and_the_session_lives_on(
    source: McpSource,
) -> None:
    toolbox = Toolbox([source], timeout_seconds=0.3)
    async with asyncio.timeout(20):  # a guard: the tool itself would take 30 s
        result = await toolbox.call("fake__slow", {"seconds": 30}, CONTEXT)
    assert result.is_error is True
    assert "did not answer within 0.3 s" in result.content
    after = await toolbox.call("fake__add", {"a": 1, "b": 1}, CONTEXT)
    assert (after.is_error, after.content) == (False, "2.0")


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_tools_are_discovered_again_when_the_server_says_they_changed(
    transport: str,
    stopped_http_server: McpHttpProcess,
    make_source: Callable[[McpServerConfig], McpSource],
) -> None:
    server: McpServerConfig = stdio_server()
    if transport == "http":  # a server of its own: the new tool stays on it
        stopped_http_server.start()
        server = HttpServer(url=stopped_http_server.url)
    source = make_source(server)
    await source.start()
    assert "fake__extra" not in {spec.name for spec in source.specs()}

    assert (await source.call("fake__grow", {"name": "extra"}, CONTEXT)).content == "grown"
    await until(lambda: "fake__extra" in {spec.name for spec in source.specs()})
    assert (await source.call("fake__extra", {}, CONTEXT)).content == "extra"
    assert source.status().tools == len(FAKE_TOOLS) + 1


async def test_a_server_down_at_start_comes_up_later(
    stopped_http_server: McpHttpProcess,
    make_source: Callable[[McpServerConfig], McpSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.agent.mcp")
    source = make_source(HttpServer(url=stopped_http_server.url))
    async with asyncio.timeout(20):  # a guard: start() does not wait for the server
        await source.start()
    status = source.status()
    assert status.state == "down"
    assert status.error  # says why
    assert source.specs() == []
    result = await source.call("fake__add", {"a": 1, "b": 2}, CONTEXT)
    assert result.is_error is True

    await until(lambda: len(records(caplog, "reconnecting in")) >= 3)
    await asyncio.to_thread(stopped_http_server.start)  # retrying meanwhile
    await until(lambda: source.status().state == "up")
    assert {spec.name for spec in source.specs()} == FAKE_TOOLS
    assert (await source.call("fake__add", {"a": 1, "b": 2}, CONTEXT)).content == "3.0"
    # Retried every 0.05 to 0.2 s while down, but told once each way.
    assert len(records(caplog, "is down")) == 1
    assert len(records(caplog, "is up")) == 1


async def test_an_http_server_that_dies_mid_call_is_reconnected_when_it_is_back(
    stopped_http_server: McpHttpProcess, make_source: Callable[[McpServerConfig], McpSource]
) -> None:
    stopped_http_server.start()
    source = make_source(HttpServer(url=stopped_http_server.url))
    await source.start()
    assert source.status().state == "up"

    result = await source.call("fake__crash", {}, CONTEXT)
    assert result.is_error is True
    assert "went away during the call" in result.content
    stopped_http_server.kill()  # reaps the process that exited
    assert source.status().state == "down"
    assert source.specs() == []

    await asyncio.to_thread(stopped_http_server.start)
    await until(lambda: source.status().state == "up")
    assert (await source.call("fake__add", {"a": 2, "b": 3}, CONTEXT)).content == "5.0"


async def test_a_stdio_server_that_dies_mid_call_is_started_again(
    make_source: Callable[[McpServerConfig], McpSource],
) -> None:
    source = make_source(stdio_server())
    await source.start()
    first = int((await source.call("fake__pid", {}, CONTEXT)).content)

    result = await source.call("fake__crash", {}, CONTEXT)
    assert result.is_error is True
    assert source.status().state == "down"

    await until(lambda: source.status().state == "up")
    second = int((await source.call("fake__pid", {}, CONTEXT)).content)
    assert second != first
    assert not alive(first)


async def test_close_ends_the_stdio_server_and_the_sources_task(
    make_source: Callable[[McpServerConfig], McpSource],
) -> None:
    source = make_source(stdio_server())
    await source.start()
    pid = int((await source.call("fake__pid", {}, CONTEXT)).content)
    assert alive(pid)

    await source.close()
    assert not alive(pid)
    assert [task for task in asyncio.all_tasks() if task.get_name() == "mcp:fake"] == []
    assert source.specs() == []
    result = await source.call("fake__add", {"a": 1, "b": 2}, CONTEXT)
    assert result.is_error is True


async def test_close_while_connecting_returns_promptly(
    make_source: Callable[[McpServerConfig], McpSource],
) -> None:
    # A command that never answers: the source is still connecting when it is closed.
    source = make_source(StdioServer(command="sleep", args=["60"]))
    start = asyncio.create_task(source.start())
    await until(lambda: bool([t for t in asyncio.all_tasks() if t.get_name() == "mcp:fake"]))
    async with asyncio.timeout(30):  # a guard: the command would hold on for 60 s
        await source.close()
        await start
    assert [task for task in asyncio.all_tasks() if task.get_name() == "mcp:fake"] == []


def records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if text in record.getMessage()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
