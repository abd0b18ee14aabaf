"""Leases stay with a live process however long its work takes; a lost LISTEN connection comes
back and nothing notified meanwhile is missed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually, until_workflow


async def test_work_outliving_its_lease_stays_with_the_live_process(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM, inbox: Inbox
) -> None:
    short = {"lease_seconds": 0.6, "poll_interval_seconds": 0.1}
    worker = await start_app(**short)
    rival = await start_app(**short)
    release_llm = fake_llm.hold("slow")
    release_smtp = inbox.hold_before_accepting("a@example.com")
    await worker.client.post("/workflows/slow/on_notify/send", json="a@example.com")
    await worker.client.post("/workflows/slow/run/send", json="slow")
    await fake_llm.wait_for_calls("slow")
    # Several lease lengths pass while the rival polls for claimable work every 0.1 s.
    await asyncio.sleep(2.0)
    release_llm.set()
    await inbox.wait_for_arrival("a@example.com")
    await asyncio.sleep(2.0)
    release_smtp.set()
    status = await until_workflow(rival.client, "slow", all_sent)
    assert (status["attempts"], status["subscriptions"][0]["attempts"]) == (1, 1)
    assert fake_llm.calls_for("slow") == 1
    assert [m["To"] for m in inbox.messages] == ["a@example.com"]


async def listener_backends(db: asyncpg.Connection) -> list[int]:
    rows = await db.fetch(
        "SELECT pid FROM pg_stat_activity "
        "WHERE application_name = 'agent-notify-listener' AND datname = current_database()"
    )
    return [row["pid"] for row in rows]


async def test_listener_reconnects_and_rechecks_its_waiters(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM, db: asyncpg.Connection
) -> None:
    # A minute-long poll: only notifications (or the re-check after reconnecting) wake anyone.
    runner = await start_app(poll_interval_seconds=60)
    waiter = await start_app(poll_interval_seconds=60)
    listener = waiter.app.state.process.listener
    release = fake_llm.hold("across a reconnect")
    await runner.client.post("/workflows/lost/run/send", json="across a reconnect")
    await fake_llm.wait_for_calls("across a reconnect")
    attached = asyncio.create_task(
        waiter.client.post("/workflows/lost/run", json="across a reconnect")
    )
    await eventually(lambda: asyncio.sleep(0, listener.waiter_count), lambda n: n == 1)

    # Cut every LISTEN connection, then resolve while the waiter's may still be down.
    for pid in await listener_backends(db):
        await db.execute("SELECT pg_terminate_backend($1)", pid)
    release.set()
    async with asyncio.timeout(10):
        response = await attached
    assert response.json()["output"] == answer_for("across a reconnect")
    await eventually(lambda: asyncio.sleep(0, listener.reconnects), lambda n: n >= 1)
    assert (await waiter.client.get("/readyz")).status_code == 200
    metrics = (await waiter.client.get("/metrics")).text
    assert "agent_notify_listener_reconnects_total 1.0" in metrics
