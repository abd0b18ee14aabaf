"""Postgres behind PgBouncer in transaction mode: queries through the pooler (DATABASE_POOLER=
transaction), LISTEN and migrations on the direct connection (LISTEN_DATABASE_URL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from app.db.connection import asyncpg_dsn
from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually, plain_text, until_workflow
from tests.pgbouncer import PgBouncer

QUERY = "Write a 1000-word description of Durable Execution"
StartApp = Callable[..., Awaitable[RunningApp]]


async def test_the_pooler_is_in_transaction_mode(pgbouncer: PgBouncer, database_url: str) -> None:
    # What the setting is for: a statement the driver keeps prepared lives on the server
    # session it was prepared on; while another client holds that session in a transaction,
    # the next execution runs on another session, where it does not exist. Unnamed ones
    # (statement cache off, as DATABASE_POOLER=transaction sets it) run anywhere.
    dsn = asyncpg_dsn(pgbouncer.url_for(database_url))
    for cache_size, fails in ((100, True), (0, False)):
        first = await asyncpg.connect(dsn, statement_cache_size=cache_size)
        second = await asyncpg.connect(dsn, statement_cache_size=cache_size)
        try:
            assert await first.fetchval("SELECT $1::int + 1", 1) == 2
            async with second.transaction():
                await second.execute("SELECT 1")  # BEGIN alone would not take a session
                if fails:
                    with pytest.raises(asyncpg.InvalidSQLStatementNameError):
                        await first.fetchval("SELECT $1::int + 1", 1)
                else:
                    assert await first.fetchval("SELECT $1::int + 1", 1) == 2
        finally:
            await first.close()
            await second.close()


async def test_seed_walkthrough_through_the_pooler(
    start_app: StartApp, pooled: dict[str, Any], inbox: Inbox, fake_llm: FakeLLM
) -> None:
    app = await start_app(**pooled)
    accepted = await app.client.post("/workflows/msg-123/run/send", json=QUERY)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"key": "msg-123", "status": "accepted"}
    subscribed = await app.client.post("/workflows/msg-123/on_notify/send", json="me@example.com")
    assert subscribed.status_code == 202, subscribed.text
    [message] = await inbox.wait_for(1)
    assert message["To"] == "me@example.com"
    assert message["Message-ID"] == subscribed.json()["message_id"]
    assert plain_text(message).strip() == answer_for(QUERY)
    status = await until_workflow(app.client, "msg-123", all_sent)
    assert status["status"] == "succeeded"
    assert status["attempts"] == 1


async def test_many_workflows_at_once_through_the_pooler(
    start_app: StartApp, pooled: dict[str, Any], inbox: Inbox
) -> None:
    # Concurrent statements spread over several of PgBouncer's server sessions: a statement
    # kept prepared on one of them would be missing (or already there) on another.
    app = await start_app(**pooled)
    keys = [f"many-{n}" for n in range(30)]
    answers = await asyncio.gather(
        *(app.client.post(f"/workflows/{key}/run/send", json=key) for key in keys),
        *(
            app.client.post(f"/workflows/{key}/on_notify/send", json=f"{key}@example.com")
            for key in keys
        ),
    )
    assert [answer.status_code for answer in answers] == [202] * 60
    await inbox.wait_for(len(keys), timeout=30)
    listing = await app.client.get("/workflows", params={"status": "succeeded", "limit": 100})
    assert sorted(item["key"] for item in listing.json()["items"]) == sorted(keys)
    assert (await app.client.get("/readyz")).status_code == 200


async def test_late_subscriber_is_served_at_once_through_the_pooler(
    start_app: StartApp, pooled: dict[str, Any], inbox: Inbox
) -> None:
    # A poll interval far longer than the deadline: only the hand-off can be in time.
    app = await start_app(poll_interval_seconds=60, **pooled)
    result = await app.client.post("/workflows/late/run", json=QUERY)
    assert result.status_code == 200, result.text
    delivered = await app.client.post("/workflows/late/on_notify", json="late@example.com")
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["status"] == "sent"
    [message] = await inbox.wait_for(1, timeout=2)
    assert message["Message-ID"] == delivered.json()["message_id"]


async def test_notify_through_the_pooler_wakes_a_waiter_on_another_replica(
    start_app: StartApp, pooled: dict[str, Any], fake_llm: FakeLLM
) -> None:
    # The NOTIFY is sent by a transaction through PgBouncer and heard on the other replica's
    # direct LISTEN connection; with a poll of a minute, nothing else could wake it in time.
    runner = await start_app(poll_interval_seconds=60, **pooled)
    waiter = await start_app(poll_interval_seconds=60, **pooled)
    release = fake_llm.hold("cross")
    await runner.client.post("/workflows/cross/run/send", json="cross")
    await fake_llm.wait_for_calls("cross")
    attached = asyncio.create_task(waiter.client.post("/workflows/cross/run", json="cross"))
    listener = waiter.app.state.process.listener
    await eventually(lambda: asyncio.sleep(0, listener.waiter_count), lambda n: n == 1)
    release.set()
    async with asyncio.timeout(5):
        response = await attached
    assert response.status_code == 200
    assert response.json()["output"] == answer_for("cross")
