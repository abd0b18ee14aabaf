"""Idle and slow connections cannot starve `agent-notify serve` (issue 16, item 4): at
MAX_CONNECTIONS a new connection closes the oldest one still waiting for its request head; a head
must arrive within HEADER_TIMEOUT_SECONDS and fit in MAX_HEADER_BYTES; when every connection is
busy, a new one is answered 503 at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.fakes.llm import FakeLLM, answer_for
from tests.service import ServiceProcess

# The service's open-file limit in the flood test, and more idle connections than it allows.
FILE_LIMIT = 256
IDLE_CONNECTIONS = 300
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: agent-notify\r\n"
DRIP = HALF_HEAD + b"".join(b"X-Drip-%d: 1\r\n" % i for i in range(200))

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def drip(writer: asyncio.StreamWriter, every: float) -> None:
    """Send a head one byte at a time, never finishing it, until the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for byte in DRIP:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)  # the drip's pace: this is the client being slow


async def answer(connection: Connection) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it only reset it)."""
    reader, _writer = connection
    try:
        return await reader.read()
    except ConnectionError:
        return b""


@contextlib.asynccontextmanager
async def idle_connections(port: int, count: int) -> AsyncIterator[list[Connection]]:
    """`count` connections in thirds: silent, half a head sent, a head dripping."""
    connections: list[Connection] = []
    drips: list[asyncio.Task[None]] = []
    try:
        for i in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            connections.append((reader, writer))
            if i % 3 == 1:
                writer.write(HALF_HEAD)
            elif i % 3 == 2:
                drips.append(asyncio.create_task(drip(writer, every=0.5)))
        yield connections
    finally:
        for task in drips:
            task.cancel()
        for _reader, writer in connections:
            writer.close()


async def test_more_idle_connections_than_the_file_limit_leave_the_service_answering(
    start_service: Callable[..., Awaitable[ServiceProcess]],
) -> None:
    # A header deadline far beyond the test: only the cap can make room.
    service = await start_service(
        file_limit=FILE_LIMIT, max_connections=20, header_timeout_seconds=600.0
    )
    async with idle_connections(service.port, IDLE_CONNECTIONS) as connections:
        async with service.client() as client:
            health = await asyncio.wait_for(client.get("/healthz"), timeout=10)
            assert health.status_code == 200
            run = await asyncio.wait_for(
                client.post("/workflows/flood/run", json="through the flood"), timeout=30
            )
            assert run.status_code == 200, run.text
            assert run.json()["output"] == answer_for("through the flood")
        # Room was made by closing the oldest idle ones: all but the cap's worth of them.
        readers = [asyncio.create_task(answer(c)) for c in connections]
        try:
            async with asyncio.timeout(10):
                closed = 0
                for finished in asyncio.as_completed(readers):
                    await finished
                    closed += 1
                    if closed >= IDLE_CONNECTIONS - 20:
                        break
        finally:
            for task in readers:
                task.cancel()
    assert closed >= IDLE_CONNECTIONS - 20


@pytest.fixture
async def guarded(
    start_service: Callable[..., Awaitable[ServiceProcess]],
) -> ServiceProcess:
    return await start_service(max_connections=3, header_timeout_seconds=2.0, max_header_bytes=4096)


async def test_a_dripping_head_is_closed_after_the_header_timeout(guarded: ServiceProcess) -> None:
    connection = await asyncio.open_connection("127.0.0.1", guarded.port)
    dripping = asyncio.create_task(drip(connection[1], every=0.1))
    try:
        # The deadline is 2 s; the drip alone would take 300 s.
        response = await asyncio.wait_for(answer(connection), timeout=15)
    finally:
        dripping.cancel()
        connection[1].close()
    assert response.startswith(b"HTTP/1.1 408 ")
    body = json.loads(response.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "request_timeout"


async def test_a_silent_connection_is_closed_after_the_header_timeout(
    guarded: ServiceProcess,
) -> None:
    connection = await asyncio.open_connection("127.0.0.1", guarded.port)
    try:
        assert await asyncio.wait_for(answer(connection), timeout=15) == b""
    finally:
        connection[1].close()


async def test_an_oversized_head_is_refused(guarded: ServiceProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.port)
    try:
        writer.write(HALF_HEAD + b"X-Big: " + b"a" * 8192 + b"\r\n\r\n")
        response = await asyncio.wait_for(answer((reader, writer)), timeout=15)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 431 ")
    assert json.loads(response.partition(b"\r\n\r\n")[2])["error"]["code"] == "headers_too_large"


async def test_when_every_connection_is_busy_a_new_one_gets_503_at_once(
    guarded: ServiceProcess, fake_llm: FakeLLM
) -> None:
    release = fake_llm.hold("busy")
    clients = [guarded.client() for _ in range(3)]
    try:
        waiting = [
            asyncio.create_task(client.post(f"/workflows/busy-{i}/run", json="busy"))
            for i, client in enumerate(clients)
        ]
        await fake_llm.wait_for_calls("busy", count=3)
        async with guarded.client() as client:
            refused = await asyncio.wait_for(client.get("/healthz"), timeout=5)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "too_many_connections"
        assert refused.headers["connection"] == "close"
        release.set()
        assert [(await task).status_code for task in waiting] == [200, 200, 200]
    finally:
        release.set()
        for client in clients:
            await client.aclose()
