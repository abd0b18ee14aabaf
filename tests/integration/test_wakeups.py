"""Wake-ups leave the writing transaction: the statements commit without a NOTIFY, and the store
sends what they changed afterwards, coalesced, in a transaction of its own (app/db/wakeups.py,
migration 0017)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.connection import asyncpg_dsn, sqlalchemy_url
from app.db.gateway import QUERIES, Database
from app.db.rows import RunInput
from app.db.scope import KEY_CHANNEL, WORK_CHANNEL, Scope
from app.db.store import Store
from app.db.wakeups import Wakeups

Heard = asyncio.Queue[tuple[str, str]]


@pytest.fixture
async def heard(database_url: str) -> AsyncIterator[Heard]:
    """What a LISTEN beside the service hears on the key and work channels, in order."""
    queue: Heard = asyncio.Queue()
    connection = await asyncpg.connect(asyncpg_dsn(database_url))

    def hear(_connection: object, _pid: int, channel: str, payload: str) -> None:
        queue.put_nowait((channel, payload))

    await connection.add_listener(KEY_CHANNEL, hear)
    await connection.add_listener(WORK_CHANNEL, hear)
    try:
        yield queue
    finally:
        await connection.close()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database.connect(database_url, connections=2)
    try:
        yield database
    finally:
        await database.close()


async def next_heard(heard: Heard) -> tuple[str, str]:
    async with asyncio.timeout(10):
        return await heard.get()


def test_no_statement_notifies_in_its_own_transaction() -> None:
    """Only the wake-ups' own statement NOTIFYs, and model_slot, whose NOTIFY names the waiter
    it granted a slot to (the caller cannot know which)."""
    notifying = {name for name, sql in QUERIES.items() if "pg_notify" in sql}
    assert notifying == {"send_wakeups"}
    assert ":flow_channel" in QUERIES["model_slot"]
    assert not [name for name, sql in QUERIES.items() if ":key_channel" in sql]
    assert not [name for name, sql in QUERIES.items() if ":work_channel" in sql]


async def test_the_rule_functions_notify_only_when_given_a_channel(
    db: asyncpg.Connection, heard: Heard
) -> None:
    """NULL channels (this release) send nothing in the transaction; a channel (a replica of
    the release before, during a rolling deploy) NOTIFYs as before."""
    for key in ("quiet", "told"):
        await db.execute(
            "INSERT INTO workflow (key, query, status, finished_at) "
            "VALUES ($1, 'q', 'succeeded', now())",
            key,
        )
    # Every rule function NOTIFYs through agent_notify_wake_v1 (migration 0017's rewrite).
    calling = await db.fetch(
        "SELECT proname FROM pg_proc WHERE proname LIKE 'agent\\_notify\\_%' "
        "AND strpos(prosrc, 'pg_notify(') > 0"
    )
    assert [row["proname"] for row in calling] == ["agent_notify_wake_v1"]
    deleted = "SELECT outcome FROM agent_notify_delete_workflow_v1($1, $2)"
    assert await db.fetchval(deleted, "quiet", None) == "deleted"
    assert await db.fetchval(deleted, "told", KEY_CHANNEL) == "deleted"
    # Notifications arrive in commit order: had the first deletion notified, it came first.
    assert await next_heard(heard) == (KEY_CHANNEL, "told")


async def test_wakeups_are_sent_after_the_commit_each_once_a_batch(
    database: Database, heard: Heard
) -> None:
    store = Store.of(database, Scope(owner="o", lease_seconds=30))
    batches: list[tuple[int, bool]] = []
    store.wakeups.on_batch(lambda size, sent: batches.append((size, sent)))
    # Posted before the sending task first runs: one batch, each wake-up once.
    for _ in range(50):
        store.wakeups.key("k1")
        store.wakeups.work("delivery")
    store.wakeups.key("k1", "sub")
    await store.wakeups.flush()
    assert batches == [(3, True)]
    assert [await next_heard(heard) for _ in range(3)] == [
        (KEY_CHANNEL, "k1"),
        (WORK_CHANNEL, "delivery"),
        (KEY_CHANNEL, "k1 sub"),
    ]
    # A store's change posts its own: a run left for any worker announces itself.
    _, created = await store.runs.accept("k2", RunInput("q"), leased=False)
    assert created
    await store.wakeups.flush()
    assert await next_heard(heard) == (WORK_CHANNEL, "run")
    # Heard after the commit: the row is there for whoever it wakes.
    assert await database.fetchrow("select_workflow", key="k2") is not None


async def test_wakeups_posted_within_an_interval_of_a_send_go_together(
    database: Database, heard: Heard
) -> None:
    wakeups = Wakeups(database, interval_seconds=1.0)
    batches: list[int] = []
    wakeups.on_batch(lambda size, _sent: batches.append(size))
    wakeups.key("k1")  # the first after a quiet interval: at once
    await wakeups.flush()
    wakeups.key("k2")
    await asyncio.sleep(0)  # the sending task starts, and waits out the interval
    wakeups.key("k3")
    await wakeups.flush()
    assert batches == [1, 2]
    assert [await next_heard(heard) for _ in range(3)] == [
        (KEY_CHANNEL, "k1"),
        (KEY_CHANNEL, "k2"),
        (KEY_CHANNEL, "k3"),
    ]


async def test_wakeups_that_cannot_be_sent_are_dropped_and_counted() -> None:
    """The fallback poll stands in for them; nothing waits or raises."""

    async def refuse() -> asyncpg.Connection:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    engine = create_async_engine(
        sqlalchemy_url("postgresql://nobody@127.0.0.1/x"), async_creator=refuse
    )
    database = Database(engine, connections=1)
    wakeups = Wakeups(database)
    batches: list[tuple[int, bool]] = []
    wakeups.on_batch(lambda size, sent: batches.append((size, sent)))
    try:
        wakeups.key("k")
        wakeups.steps("k")
        await wakeups.flush()
        assert batches == [(2, False)]
        wakeups.key("k")  # a later batch is tried again
        await wakeups.flush()
        assert batches == [(2, False), (1, False)]
    finally:
        await database.close()
