"""Callers that wait (sync `run`, sync `on_notify`, attach, events) are released when they hang
up, and sync calls wait at most MAX_WAIT_SECONDS, then answer 202 with where to look.

Clients hang up for real: a raw socket to a real uvicorn server, closed after the request was
sent, so the server sees the connection go as it would for a client that gave up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually, samples, until_workflow


@asynccontextmanager
async def callers(
    app: RunningApp, requests: list[tuple[str, str, object]], headers: str = ""
) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """Send each (method, path, JSON body or None) on its own connection, with these extra
    header lines, read nothing, and hang up (close the socket) on leaving."""
    address = urlsplit(app.base_url)
    writers = []
    try:
        for method, path, body in requests:
            _reader, writer = await asyncio.open_connection(address.hostname, address.port)
            writers.append(writer)
            payload = b"" if body is None else json.dumps(body).encode()
            head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(payload)}\r\n"
            head += headers
            if body is not None:
                head += "Content-Type: application/json\r\n"
            writer.write(head.encode() + b"\r\n" + payload)
            await writer.drain()
        yield writers
    finally:
        for writer in writers:
            writer.close()
        for writer in writers:
            await writer.wait_closed()


def waiters_of(app: RunningApp) -> Callable[[], Awaitable[int]]:
    listener = app.app.state.process.listener
    return lambda: asyncio.sleep(0, listener.waiter_count)


async def gauge(app: RunningApp) -> float:
    metrics = samples((await app.client.get("/metrics")).text)
    return metrics[("agent_notify_waiters", ())]


async def test_sync_runs_whose_callers_hang_up_release_their_waiters(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    app = await start_app()
    release = fake_llm.hold("slow")
    keys = [f"hung-{n}" for n in range(50)]
    async with callers(app, [("POST", f"/workflows/{key}/run", "slow") for key in keys]):
        await fake_llm.wait_for_calls("slow", len(keys))
        # Each run in flight watches its own key (for a cancel); each caller waits on it too.
        await eventually(waiters_of(app), lambda n: n == 2 * len(keys))
    runs_in_flight = len(keys)
    await eventually(waiters_of(app), lambda n: n == runs_in_flight, timeout=5)
    assert await gauge(app) == runs_in_flight
    statuses = [(await app.client.get(f"/workflows/{key}")).json()["status"] for key in keys]
    assert set(statuses) == {"running"}  # released while the runs go on

    release.set()
    for key in keys:
        status = await until_workflow(app.client, key, lambda s: s["status"] == "succeeded")
        assert status["output"] == answer_for("slow")
    await eventually(waiters_of(app), lambda n: n == 0)
    assert fake_llm.calls_for("slow") == len(keys)


async def test_sync_on_notify_callers_that_hang_up_leave_their_subscriptions_waiting(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    app = await start_app()
    await app.client.post("/workflows/ask/run/send", json="anything")
    await until_workflow(app.client, "ask", lambda s: s["status"] == "succeeded")
    await eventually(waiters_of(app), lambda n: n == 0)
    addresses = [f"approver-{n}@example.com" for n in range(50)]
    subscribe = [
        ("POST", "/workflows/ask/on_notify", {"email": address, "promise": "approval"})
        for address in addresses
    ]
    async with callers(app, subscribe):
        await eventually(waiters_of(app), lambda n: n == len(addresses))
    await eventually(waiters_of(app), lambda n: n == 0, timeout=5)
    assert await gauge(app) == 0

    status = await until_workflow(app.client, "ask", lambda s: len(s["subscriptions"]) == 50)
    approvals = [s for s in status["subscriptions"] if s["promise"] == "approval"]
    assert sorted(s["email"] for s in approvals) == sorted(addresses)
    assert {s["status"] for s in approvals} == {"waiting"}
    resolved = await app.client.post(
        "/workflows/ask/promises/approval/resolve", json={"value": "approved"}
    )
    assert resolved.status_code == 200
    await until_workflow(app.client, "ask", all_sent)
    await inbox.wait_for(len(addresses))


async def test_a_sync_call_whose_caller_hung_up_can_be_retried_with_its_idempotency_key(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    app = await start_app()
    release = fake_llm.hold("retried")
    request = ("POST", "/workflows/retried/run", "retried")
    async with callers(app, [request], headers="Idempotency-Key: try-1\r\n"):
        await eventually(waiters_of(app), lambda n: n == 2)  # the run and its caller
    await eventually(waiters_of(app), lambda n: n == 1, timeout=5)
    # Nobody heard an answer, so none is recorded: the retry waits for the run.
    retry = asyncio.create_task(
        app.client.post(
            "/workflows/retried/run", json="retried", headers={"Idempotency-Key": "try-1"}
        )
    )
    await eventually(waiters_of(app), lambda n: n == 2)
    release.set()
    response = await retry
    assert response.status_code == 200, response.text
    assert response.json()["output"] == answer_for("retried")
    assert fake_llm.calls_for("retried") == 1


async def test_attach_and_events_release_their_waiters_when_the_client_goes(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    app = await start_app()
    release = fake_llm.hold("long")
    await app.client.post("/workflows/long/run/send", json="long")
    await fake_llm.wait_for_calls("long")
    await eventually(waiters_of(app), lambda n: n == 1)  # the run in flight
    watching = [
        ("GET", "/workflows/long/output?timeout=600", None),
        ("GET", "/workflows/long/events", None),
        ("GET", "/AsyncNotificationsAgent/long/output?timeout=600", None),
    ]
    async with callers(app, watching):
        await eventually(waiters_of(app), lambda n: n == 1 + len(watching))
    await eventually(waiters_of(app), lambda n: n == 1, timeout=5)
    release.set()
    await until_workflow(app.client, "long", lambda s: s["status"] == "succeeded")


async def test_sync_calls_wait_at_most_max_wait_seconds_then_say_where_to_look(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM, inbox: Inbox
) -> None:
    app = await start_app(max_wait_seconds=0.5)
    client = app.client
    release = fake_llm.hold("patient")
    for prefix in ("/workflows", "/AsyncNotificationsAgent"):
        pending = await client.post(f"{prefix}/later/run", json="patient", timeout=10)
        assert pending.status_code == 202, pending.text
        assert pending.json() == {"key": "later", "status": "running"}
        assert pending.headers["location"] == f"{prefix}/later/output"

        waiting = await client.post(
            f"{prefix}/later/on_notify",
            json={"email": "me@example.com", "promise": "approval"},
            timeout=10,
        )
        assert waiting.status_code == 202, waiting.text
        assert waiting.headers["location"] == f"{prefix}/later"
        subscription = waiting.json()
        assert (subscription["key"], subscription["status"]) == ("later", "waiting")
        assert subscription["email"] == "me@example.com"
    # The callers are answered; only the run in flight still watches its key.
    await eventually(waiters_of(app), lambda n: n == 1)

    release.set()  # the run and the subscription go on without their callers
    output = await client.get(pending.headers["location"], params={"timeout": 10})
    assert output.json()["output"] == answer_for("patient")
    await client.post("/workflows/later/promises/approval/resolve", json={"value": "yes"})
    await inbox.wait_for_arrival("me@example.com")
    assert fake_llm.calls_for("patient") == 1


async def test_a_sync_call_answered_in_time_is_answered_in_full(
    client: httpx.AsyncClient, inbox: Inbox
) -> None:
    ran = await client.post("/workflows/quick/run", json="quick")
    assert ran.status_code == 200
    assert ran.json()["output"] == answer_for("quick")
    sent = await client.post("/workflows/quick/on_notify", json="me@example.com")
    assert sent.status_code == 200
    assert sent.json()["status"] == "sent"
    assert "location" not in sent.headers
