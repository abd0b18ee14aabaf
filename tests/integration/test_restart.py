"""Work left by a process that died (or stopped) is finished by the next one on the database.

(kill -9 of a real service process is in tests/e2e/test_faults.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually, plain_text, until_workflow


async def test_expired_leases_are_taken_over_at_start_up(
    start_app: Callable[..., Awaitable[RunningApp]],
    db: asyncpg.Connection,
    fake_llm: FakeLLM,
    inbox: Inbox,
) -> None:
    # A dead process left a run mid-call and a delivery mid-send, both leased to it.
    await db.execute("""
        INSERT INTO workflow (key, query, status, attempts, lease_owner, lease_expires_at,
                              started_at)
        VALUES ('orphan-run', 'left behind', 'running', 1, 'dead', now() - interval '1 s', now());
        INSERT INTO workflow (key, query, status, output, finished_at)
        VALUES ('orphan-mail', 'q', 'succeeded', 'the answer', now());
        INSERT INTO promise (workflow_key, name, state, value, completed_at)
        VALUES ('orphan-mail', 'agent_response', 'resolved', '"the answer"', now());
        INSERT INTO subscription (id, workflow_key, promise_name, email, status, message_id,
                                  attempts, lease_owner, lease_expires_at, ready_at)
        VALUES (gen_random_uuid(), 'orphan-mail', 'agent_response', 'me@example.com', 'ready',
                '<orphan@test>', 1, 'dead', now() - interval '1 s', now());
    """)
    app = await start_app()
    [message] = await inbox.wait_for(1)
    assert message["Message-ID"] == "<orphan@test>"
    assert plain_text(message).strip() == "the answer"
    status = await until_workflow(app.client, "orphan-run", lambda s: s["status"] == "succeeded")
    assert status["output"] == answer_for("left behind")
    assert status["attempts"] == 2
    await until_workflow(app.client, "orphan-mail", all_sent)


async def test_graceful_stop_hands_back_unfinished_work_at_once(
    start_app: Callable[..., Awaitable[RunningApp]],
    fake_llm: FakeLLM,
    inbox: Inbox,
) -> None:
    query = "outlives its process"
    release = fake_llm.hold(query)
    # A lease far longer than the test: only the hand-back lets the next process take over.
    first = await start_app(lease_seconds=300, shutdown_grace_seconds=0.2)
    await first.client.post("/workflows/handback/run/send", json=query)
    await first.client.post("/workflows/handback/on_notify/send", json="me@example.com")
    await fake_llm.wait_for_calls(query)
    await first.stop()
    release.set()

    second = await start_app(lease_seconds=300, poll_interval_seconds=0.2)
    await inbox.wait_for(1)
    status = await until_workflow(second.client, "handback", all_sent)
    assert status["status"] == "succeeded"
    assert fake_llm.calls_for(query) == 2


async def test_sync_waiter_on_one_replica_is_woken_by_another(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    # Poll interval of a minute: only the NOTIFY through Postgres can wake the waiter in time.
    runner = await start_app(poll_interval_seconds=60)
    waiter = await start_app(poll_interval_seconds=60)
    release = fake_llm.hold("cross")
    await runner.client.post("/workflows/cross/run/send", json="cross")
    await fake_llm.wait_for_calls("cross")
    attached = asyncio.create_task(waiter.client.post("/workflows/cross/run", json="cross"))
    listener = waiter.app.state.process.listener
    await eventually(lambda: asyncio.sleep(0, listener.waiter_count), lambda n: n == 1)
    release.set()
    async with asyncio.timeout(5):
        response = await attached
    assert response.json()["output"] == answer_for("cross")


async def test_waiting_requests_get_a_503_when_the_process_shuts_down(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    app = await start_app()
    fake_llm.hold("outlasting")
    listener = app.app.state.process.listener
    await app.client.post("/workflows/sd/run/send", json="outlasting")
    await fake_llm.wait_for_calls("outlasting")
    watching = listener.waiter_count  # the run in flight watches for its cancellation
    waiting = asyncio.create_task(app.client.post("/workflows/sd/run", json="outlasting"))
    await eventually(lambda: asyncio.sleep(0, listener.waiter_count), lambda n: n > watching)
    app.app.state.service.begin_shutdown()
    response = await waiting
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "shutting_down"


async def test_a_process_leases_itself_no_more_deliveries_than_its_backlog_allows(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox, db: asyncpg.Connection
) -> None:
    app = await start_app(delivery_concurrency=2)
    await app.client.post("/workflows/many/run", json="q")
    emails = [f"user{i}@example.com" for i in range(20)]
    releases = [inbox.hold_before_accepting(email) for email in emails]
    await asyncio.gather(
        *(app.client.post("/workflows/many/on_notify/send", json=email) for email in emails)
    )
    await eventually(lambda: asyncio.sleep(0, len(inbox.arrived)), lambda n: n == 2)
    leased = await db.fetchval("SELECT count(*) FROM subscription WHERE lease_owner IS NOT NULL")
    # Two being sent, six queued here (a backlog of 4 x 2); the other 12 wait, unleased, for
    # whoever has room.
    assert leased == 8
    assert len(inbox.arrived) == 2
    for release in releases:
        release.set()
    await until_workflow(app.client, "many", all_sent, timeout=20)
    assert len(inbox.messages) == 20
