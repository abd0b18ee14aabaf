"""The store's transactions against a real Postgres, including forced lock interleavings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import DATABASE_ERRORS, asyncpg_dsn, create_engine, is_outage, sqlalchemy_url
from app.durable.store import Delivery, RunInput, Store, Subscribed, WorkflowRow
from tests.helpers import eventually

OWNER = "test-owner"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = create_engine(database_url, pool_size=4)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


async def blocked_on_locks(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def until_blocked(db: asyncpg.Connection, count: int) -> None:
    await eventually(lambda: blocked_on_locks(db), lambda blocked: blocked >= count)


def subscribe(store: Store, key: str, email: str) -> Awaitable[Subscribed]:
    subscription_id = uuid.uuid4()
    return store.subscribe(
        key,
        email,
        subscription_id=subscription_id,
        message_id=f"<{subscription_id}@test>",
        deliver_to=OWNER,
        reserve=lambda wanted: wanted,
        lease_seconds=30,
        notify_on_failure=True,
        max_per_workflow=1000,
    )


def complete(store: Store, run: WorkflowRow, *, room: int = 1) -> Awaitable[Any]:
    return store.complete_run(
        run.key,
        created_at=run.created_at,
        owner=OWNER,
        output="the answer",
        error=None,
        deliver_to=OWNER,
        room=room,
        lease_seconds=30,
        notify_on_failure=True,
    )


@pytest.mark.parametrize("promise_exists", [True, False])
@pytest.mark.parametrize("first", ["subscriber", "resolver"])
async def test_subscribe_and_resolve_contending_for_the_promise_row(
    store: Store, database_url: str, db: asyncpg.Connection, first: str, promise_exists: bool
) -> None:
    """Whichever gets the promise row first (or creates it), the subscription is delivered
    exactly once. A third transaction holds the row (or an uncommitted insert of it) until both
    contenders wait for it, so each interleaving happens every time."""
    run, _ = await store.accept_run("k", RunInput("q"), owner=OWNER, lease_seconds=30)
    create_promise = (
        "INSERT INTO promise (workflow_key, name, state) VALUES ('k', 'agent_response', 'pending')"
    )
    if promise_exists:
        await db.execute(create_promise)
    blocker = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = blocker.transaction()
        await transaction.start()
        if promise_exists:
            await blocker.execute("SELECT 1 FROM promise WHERE workflow_key = 'k' FOR UPDATE")
        else:
            await blocker.execute(create_promise)  # both contenders' inserts wait on it

        starters: dict[str, Callable[[], Awaitable[Any]]] = {
            "subscriber": lambda: subscribe(store, "k", "a@example.com"),
            "resolver": lambda: complete(store, run),
        }
        order = [first, *(name for name in starters if name != first)]
        tasks: dict[str, asyncio.Task[Any]] = {}
        for blocked, name in enumerate(order, start=1):
            tasks[name] = asyncio.ensure_future(starters[name]())
            await until_blocked(db, blocked)
        if promise_exists:
            await transaction.commit()
        else:
            await transaction.rollback()  # the row is not there after all: one of them inserts it
        subscribed: Subscribed = await tasks["subscriber"]
        completed: tuple[Any, list[Delivery]] = await tasks["resolver"]
    finally:
        await blocker.close()

    handed_over = [d.subscription_id for d in completed[1]]
    if subscribed.delivery is not None:
        handed_over.append(subscribed.delivery.subscription_id)
    assert handed_over == [subscribed.subscription.id]
    row = await db.fetchrow("SELECT status, lease_owner, attempts FROM subscription")
    assert (row["status"], row["lease_owner"], row["attempts"]) == ("ready", OWNER, 1)


async def test_completing_without_the_lease_changes_nothing(
    store: Store, db: asyncpg.Connection
) -> None:
    run, _ = await store.accept_run("k", RunInput("q"), owner="someone-else", lease_seconds=30)
    await subscribe(store, "k", "a@example.com")
    assert await complete(store, run) is None
    assert await db.fetchval("SELECT state FROM promise") == "pending"
    assert await db.fetchval("SELECT status FROM subscription") == "waiting"
    assert await db.fetchval("SELECT status FROM workflow") == "running"


async def test_an_earlier_run_of_a_reused_key_cannot_finish_or_retry_the_new_one(
    store: Store, db: asyncpg.Connection
) -> None:
    # Cancelled, deleted and started again, the new run leased to the same process as the old.
    old, _ = await store.accept_run("k", RunInput("old"), owner=OWNER, lease_seconds=30)
    await store.cancel_workflow(
        "k", deliver_to=OWNER, reserve=lambda wanted: 0, lease_seconds=30, notify_on_failure=True
    )
    assert await store.delete_workflow("k") is not None
    new, _ = await store.accept_run("k", RunInput("new"), owner=OWNER, lease_seconds=30)
    assert new.created_at != old.created_at

    assert await complete(store, old) is None
    assert not await store.retry_run_later(
        "k", created_at=old.created_at, owner=OWNER, error="late", delay_seconds=60
    )
    row = await db.fetchrow("SELECT status, error, lease_owner FROM workflow")
    assert (row["status"], row["error"], row["lease_owner"]) == ("running", None, OWNER)
    assert await db.fetchval("SELECT count(*) FROM promise WHERE state <> 'pending'") == 0
    completed = await complete(store, new)
    assert completed is not None
    assert completed[0].output == "the answer"


async def test_claims_skip_live_leases_and_take_expired_ones(
    store: Store, db: asyncpg.Connection
) -> None:
    await store.accept_run("live", RunInput("q"), owner="alive", lease_seconds=30)
    await store.accept_run("dead", RunInput("q"), owner="dead", lease_seconds=30)
    await store.accept_run("free", RunInput("q"), owner=None, lease_seconds=30)
    await db.execute(
        "UPDATE workflow SET lease_expires_at = now() - interval '1 second' WHERE key = 'dead'"
    )
    claimed = await store.claim_runs(owner=OWNER, lease_seconds=30, limit=10)
    assert sorted(w.key for w in claimed) == ["dead", "free"]
    assert {w.lease_owner for w in claimed} == {OWNER}
    assert {w.key: w.attempts for w in claimed} == {"dead": 2, "free": 1}
    assert await store.claim_runs(owner="other", lease_seconds=30, limit=10) == []


async def test_the_caller_leases_no_more_deliveries_than_it_has_slots_for(
    store: Store, db: asyncpg.Connection
) -> None:
    """The finishing run leases its oldest subscribers to the caller, as many as it has room
    for (the runner reserves one: most runs have one subscriber); the rest are readied for any
    worker to claim."""
    for key, room in (("k", 1), ("full", 0)):
        run, _ = await store.accept_run(key, RunInput("q"), owner=OWNER, lease_seconds=30)
        for i in range(5):
            await subscribe(store, key, f"user{i}@{key}.example.com")
        completed = await complete(store, run, room=room)
        assert completed is not None
        handed_over = completed[1]
        assert [d.notification.email for d in handed_over] == [f"user0@{key}.example.com"][:room]
        assert [d.attempts for d in handed_over] == [1][:room]
        rows = await db.fetch(
            "SELECT status, lease_owner, attempts FROM subscription WHERE workflow_key = $1 "
            "ORDER BY email",
            key,
        )
        assert {r["status"] for r in rows} == {"ready"}
        assert [r["lease_owner"] for r in rows] == [OWNER] * room + [None] * (5 - room)
        assert [r["attempts"] for r in rows] == [1] * room + [0] * (5 - room)
    # The rest are any worker's to claim.
    claimed = await store.claim_deliveries(owner="other", lease_seconds=30, limit=10)
    assert sorted(d.notification.email for d in claimed) == sorted(
        [f"user{i}@k.example.com" for i in (1, 2, 3, 4)]
        + [f"user{i}@full.example.com" for i in range(5)]
    )
    assert {d.notification.value for d in claimed} == {"the answer"}


async def test_concurrent_workflow_reads_share_statements(store: Store) -> None:
    """A burst of reads (waiters woken together) takes a few statements, not one each, and
    each gets its own row, or None."""
    for i in range(50):
        await store.accept_run(f"r{i}", RunInput(f"q{i}"), owner=None, lease_seconds=30)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM workflow WHERE key = ANY" in statement:
            statements.append(statement)

    event.listen(store._engine.sync_engine, "before_cursor_execute", count)
    try:
        keys = [f"r{i}" for i in range(50)] + ["absent", "r7"]
        rows = await asyncio.gather(*(store.get_workflow(key) for key in keys))
    finally:
        event.remove(store._engine.sync_engine, "before_cursor_execute", count)
    assert [row.query if row else None for row in rows] == [f"q{i}" for i in range(50)] + [
        None,
        "q7",
    ]
    # All were asked for before the first statement went out: they went in it together.
    assert len(statements) == 1


# -- the hot path's statements on the pool's asyncpg connections (Queries._driver) -----------


async def pool_backends(db: asyncpg.Connection) -> list[int]:
    """Backend pids of the engine's connections (application_name agent-notify) in this db."""
    rows = await db.fetch(
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'agent-notify'"
    )
    return sorted(row["pid"] for row in rows)


async def test_hot_statements_keep_a_connection_after_an_sql_error(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(database_url, pool_size=1)
    store = Store(engine)
    try:
        workflow, _ = await store.accept_run("k", RunInput("q"), owner=OWNER, lease_seconds=30)
        [backend] = await pool_backends(db)
        # Not the owner: the function raises AN409, an SQL error, which is the caller's answer.
        lost = await store.complete_run(
            "k",
            created_at=workflow.created_at,
            owner="someone else",
            output="x",
            error=None,
            deliver_to=OWNER,
            room=1,
            lease_seconds=30,
            notify_on_failure=True,
        )
        assert lost is None
        assert (await store.accept_run("k2", RunInput("q"), owner=None, lease_seconds=30))[1]
        assert await pool_backends(db) == [backend]  # the same connection, reused
    finally:
        await engine.dispose()


async def test_hot_statement_cancelled_midway_does_not_spoil_its_connection(
    database_url: str, db: asyncpg.Connection
) -> None:
    """A statement abandoned while it runs leaves its connection busy: it is closed, and the
    next statement gets a new one instead of "another operation is in progress"."""
    engine = create_engine(database_url, pool_size=1)
    store = Store(engine)
    blocker = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            "INSERT INTO workflow (key, query, status) VALUES ('locked', 'q', 'pending')"
        )
        # The insert of the same key waits for the blocker's transaction.
        accept = asyncio.create_task(
            store.accept_run("locked", RunInput("q"), owner=OWNER, lease_seconds=30)
        )
        await until_blocked(db, 1)
        [backend] = await pool_backends(db)
        accept.cancel()
        with pytest.raises(asyncio.CancelledError):
            await accept
        await transaction.rollback()
        assert (await store.accept_run("free", RunInput("q"), owner=None, lease_seconds=30))[1]
        # Closed from this side; its server process ends once it notices.
        await eventually(lambda: pool_backends(db), lambda backends: backend not in backends)
    finally:
        await blocker.close()
        await engine.dispose()


async def test_a_disconnect_on_a_hot_statement_renews_the_whole_pool(
    database_url: str, db: asyncpg.Connection
) -> None:
    """After a Postgres restart every pooled connection is dead: the first statement to find
    one fails (an outage, retried by its caller) and marks the rest stale, so the next
    statements get new connections instead of failing one by one."""
    engine = create_engine(database_url, pool_size=3)
    store = Store(engine)
    try:
        await asyncio.gather(
            *(
                store.accept_run(f"k{i}", RunInput("q"), owner=None, lease_seconds=30)
                for i in range(3)
            )
        )
        backends = await pool_backends(db)
        assert len(backends) == 3
        await db.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", backends)
        await eventually(lambda: pool_backends(db), lambda left: not left)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)) as failed:
            await store.accept_run("first", RunInput("q"), owner=None, lease_seconds=30)
        assert is_outage(failed.value)
        for i in range(3):
            assert (
                await store.accept_run(f"after{i}", RunInput("q"), owner=None, lease_seconds=30)
            )[1]
    finally:
        await engine.dispose()


async def test_a_hot_statement_that_cannot_connect_is_an_outage(database_url: str) -> None:
    """Postgres refusing new connections (starting up, shutting down, full) reaches the API
    as a database error it answers 503 to, and the workers as an outage they wait out."""

    async def refuse() -> asyncpg.Connection:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    engine = create_async_engine(sqlalchemy_url(database_url), async_creator=refuse)
    store = Store(engine)
    try:
        with pytest.raises(DATABASE_ERRORS) as failed:
            await store.accept_run("k", RunInput("q"), owner=None, lease_seconds=30)
        assert is_outage(failed.value)
    finally:
        await engine.dispose()
