"""The store's transactions against a real Postgres, including forced lock interleavings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.connection import DATABASE_ERRORS, asyncpg_dsn, is_outage, sqlalchemy_url
from app.db.gateway import Database
from app.db.rows import RunCompletion, RunInput, Subscribed, WorkflowRow
from app.db.runs import UnknownWorkflow
from app.db.scope import Scope
from app.db.store import Store
from tests.helpers import eventually

OWNER = "test-owner"


def store_of(database: Database, owner: str = OWNER) -> Store:
    return Store.of(database, Scope(owner=owner, lease_seconds=30))


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database.connect(database_url, connections=4)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def store(database: Database) -> Store:
    return store_of(database)


async def accept(store: Store, key: str, query: str = "q", *, leased: bool = True) -> WorkflowRow:
    run, created = await store.runs.accept(key, RunInput(query), leased=leased)
    assert created
    return run


async def blocked_on_locks(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def until_blocked(db: asyncpg.Connection, count: int) -> None:
    await eventually(lambda: blocked_on_locks(db), lambda blocked: blocked >= count)


def subscribe(store: Store, key: str, email: str, *, room: int = 1) -> Awaitable[Subscribed]:
    subscription_id = uuid.uuid4()
    return store.subscriptions.subscribe(
        key,
        email,
        subscription_id=subscription_id,
        message_id=f"<{subscription_id}@test>",
        room=room,
    )


def complete(store: Store, run: WorkflowRow, *, room: int = 1) -> Awaitable[RunCompletion | None]:
    return store.runs.complete(run, output="the answer", error=None, room=room)


@pytest.mark.parametrize("promise_exists", [True, False])
@pytest.mark.parametrize("first", ["subscriber", "resolver"])
async def test_subscribe_and_resolve_contending_for_the_promise_row(
    store: Store, database_url: str, db: asyncpg.Connection, first: str, promise_exists: bool
) -> None:
    """Whichever gets the promise row first (or creates it), the subscription is delivered
    exactly once. A third transaction holds the row (or an uncommitted insert of it) until both
    contenders wait for it, so each interleaving happens every time."""
    run = await accept(store, "k")
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
        completed: RunCompletion = await tasks["resolver"]
    finally:
        await blocker.close()

    handed_over = [d.subscription_id for d in completed.deliveries]
    if subscribed.delivery is not None:
        handed_over.append(subscribed.delivery.subscription_id)
    assert handed_over == [subscribed.subscription.id]
    row = await db.fetchrow("SELECT status, lease_owner, attempts FROM subscription")
    assert (row["status"], row["lease_owner"], row["attempts"]) == ("ready", OWNER, 1)


async def test_completing_without_the_lease_changes_nothing(
    store: Store, db: asyncpg.Connection
) -> None:
    elsewhere = store_of(store.database, owner="someone-else")
    run = await accept(elsewhere, "k")
    await subscribe(store, "k", "a@example.com")
    assert await complete(store, run) is None
    assert await db.fetchval("SELECT state FROM promise") == "pending"
    assert await db.fetchval("SELECT status FROM subscription") == "waiting"
    assert await db.fetchval("SELECT status FROM workflow") == "running"


async def test_an_earlier_run_of_a_reused_key_cannot_finish_or_retry_the_new_one(
    store: Store, db: asyncpg.Connection
) -> None:
    # Cancelled, deleted and started again, the new run leased to the same process as the old.
    old = await accept(store, "k", "old")
    await store.runs.cancel("k", room=0)
    assert await store.runs.delete("k") is not None
    new = await accept(store, "k", "new")
    assert new.created_at != old.created_at

    assert await complete(store, old) is None
    assert not await store.runs.retry_later(old, error="late", delay_seconds=60)
    row = await db.fetchrow("SELECT status, error, lease_owner FROM workflow")
    assert (row["status"], row["error"], row["lease_owner"]) == ("running", None, OWNER)
    assert await db.fetchval("SELECT count(*) FROM promise WHERE state <> 'pending'") == 0
    completed = await complete(store, new)
    assert completed is not None
    assert completed.workflow.output == "the answer"


async def test_claims_skip_live_leases_and_take_expired_ones(
    store: Store, db: asyncpg.Connection
) -> None:
    await accept(store_of(store.database, "alive"), "live")
    await accept(store_of(store.database, "dead"), "dead")
    await accept(store, "free", leased=False)
    await db.execute(
        "UPDATE workflow SET lease_expires_at = now() - interval '1 second' WHERE key = 'dead'"
    )
    claimed = await store.runs.claim(limit=10)
    assert sorted(w.key for w in claimed) == ["dead", "free"]
    assert {w.lease_owner for w in claimed} == {OWNER}
    assert {w.key: w.attempts for w in claimed} == {"dead": 2, "free": 1}
    assert await store_of(store.database, "other").runs.claim(limit=10) == []


async def test_the_caller_leases_no_more_deliveries_than_it_has_slots_for(
    store: Store, db: asyncpg.Connection
) -> None:
    """The finishing run leases its oldest subscribers to the caller, as many as it has room
    for (the runner reserves one: most runs have one subscriber); the rest are readied for any
    worker to claim."""
    for key, room in (("k", 1), ("full", 0)):
        run = await accept(store, key)
        for i in range(5):
            await subscribe(store, key, f"user{i}@{key}.example.com")
        completed = await complete(store, run, room=room)
        assert completed is not None
        handed_over = completed.deliveries
        assert [d.subscription.email for d in handed_over] == [f"user0@{key}.example.com"][:room]
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
    claimed = await store_of(store.database, "other").subscriptions.claim(limit=10)
    assert sorted(d.subscription.email for d in claimed) == sorted(
        [f"user{i}@k.example.com" for i in (1, 2, 3, 4)]
        + [f"user{i}@full.example.com" for i in range(5)]
    )
    assert {d.promise.value for d in claimed} == {"the answer"}


async def test_concurrent_workflow_reads_share_statements(store: Store) -> None:
    """A burst of reads (waiters woken together) takes a few statements, not one each, and
    each gets its own row, or None."""
    for i in range(50):
        await accept(store, f"r{i}", f"q{i}", leased=False)
    statements: list[str] = []
    database = store.database
    fetch = database.fetch

    async def counted(query: str, /, **params: Any) -> Any:
        statements.append(query)
        return await fetch(query, **params)

    database.fetch = counted  # type: ignore[method-assign]
    try:
        keys = [f"r{i}" for i in range(50)] + ["absent", "r7"]
        rows = await asyncio.gather(*(store.reads.workflow(key) for key in keys))
    finally:
        del database.fetch
    assert [row.query if row else None for row in rows] == [f"q{i}" for i in range(50)] + [
        None,
        "q7",
    ]
    # All were asked for before the first statement went out: they went in it together.
    assert statements == ["select_workflows"]


# -- the gateway's connections: errors, cancellations, restarts ---------------------------------


async def pool_backends(db: asyncpg.Connection) -> list[int]:
    """Backend pids of the engine's connections (application_name agent-notify) in this db."""
    rows = await db.fetch(
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'agent-notify'"
    )
    return sorted(row["pid"] for row in rows)


async def test_statements_keep_a_connection_after_an_sql_error(
    database_url: str, db: asyncpg.Connection
) -> None:
    database = Database.connect(database_url, connections=1)
    store = store_of(database)
    try:
        workflow = await accept(store, "k")
        [backend] = await pool_backends(db)
        # Not the owner: the function raises AN409, an SQL error, which is the caller's answer.
        lost = await store_of(database, "someone else").runs.complete(
            workflow, output="x", error=None, room=1
        )
        assert lost is None
        await accept(store, "k2", leased=False)
        assert await pool_backends(db) == [backend]  # the same connection, reused
    finally:
        await database.close()


async def test_hot_statement_cancelled_midway_does_not_spoil_its_connection(
    database_url: str, db: asyncpg.Connection
) -> None:
    """A statement abandoned while it runs leaves its connection busy: it is closed, and the
    next statement gets a new one instead of "another operation is in progress"."""
    database = Database.connect(database_url, connections=1)
    store = store_of(database)
    blocker = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            "INSERT INTO workflow (key, query, status) VALUES ('locked', 'q', 'pending')"
        )
        # The insert of the same key waits for the blocker's transaction.
        accepting = asyncio.create_task(accept(store, "locked"))
        await until_blocked(db, 1)
        [backend] = await pool_backends(db)
        accepting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await accepting
        await transaction.rollback()
        await accept(store, "free", leased=False)
        # Closed from this side; its server process ends once it notices.
        await eventually(lambda: pool_backends(db), lambda backends: backend not in backends)
    finally:
        await blocker.close()
        await database.close()


async def test_a_disconnect_renews_the_whole_pool(
    database_url: str, db: asyncpg.Connection
) -> None:
    """After a Postgres restart every pooled connection is dead: the first statement to find
    one fails (an outage, retried by its caller) and marks the rest stale, so the next
    statements get new connections instead of failing one by one."""
    database = Database.connect(database_url, connections=3)
    store = store_of(database)
    try:
        # Leased: a run left for any worker posts a wake-up, whose send may take a 4th.
        await asyncio.gather(*(accept(store, f"k{i}") for i in range(3)))
        backends = await pool_backends(db)
        assert len(backends) == 3
        await db.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", backends)
        await eventually(lambda: pool_backends(db), lambda left: not left)
        with pytest.raises(DATABASE_ERRORS) as failed:
            await accept(store, "first", leased=False)
        assert is_outage(failed.value)
        for i in range(3):
            await accept(store, f"after{i}", leased=False)
    finally:
        await database.close()


async def test_a_statement_that_cannot_connect_is_an_outage(database_url: str) -> None:
    """Postgres refusing new connections (starting up, shutting down, full) reaches the API
    as a database error it answers 503 to, and the workers as an outage they wait out."""

    async def refuse() -> asyncpg.Connection:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    engine = create_async_engine(sqlalchemy_url(database_url), async_creator=refuse)
    database = Database(engine, connections=1)
    try:
        with pytest.raises(DATABASE_ERRORS) as failed:
            await accept(store_of(database), "k", leased=False)
        assert is_outage(failed.value)
    finally:
        await database.close()


# -- one rule for releasing waiting subscribers, whoever completes the promise ------------------


@pytest.mark.parametrize("completer", ["run", "cancel", "outside"])
async def test_every_completion_releases_waiting_subscribers_by_the_same_rule(
    store: Store, db: asyncpg.Connection, completer: str
) -> None:
    """Completing a run, cancelling it and completing a promise from outside all call the one
    SQL function: the oldest `room` subscribers are leased to the caller, oldest first; the
    others are readied for any worker."""
    run = await accept(store, "k")
    promise = "agent_response" if completer != "outside" else "approval"
    for i in range(4):
        subscription_id = uuid.uuid4()
        await store.subscriptions.subscribe(
            "k",
            f"user{i}@example.com",
            promise_name=promise,
            subscription_id=subscription_id,
            message_id=f"<{subscription_id}@test>",
            room=1,
        )
    if completer == "run":
        completed = await store.runs.complete(run, output="done", error=None, room=2)
        assert completed is not None
        deliveries = completed.deliveries
    elif completer == "cancel":
        cancellation = await store.runs.cancel("k", room=2)
        assert cancellation.cancelled
        deliveries = cancellation.deliveries
    else:
        completion = await store.promises.complete("k", promise, value={"ok": True}, room=2)
        assert completion.changed
        deliveries = completion.deliveries
    assert [d.subscription.email for d in deliveries] == ["user0@example.com", "user1@example.com"]
    assert {d.promise.name for d in deliveries} == {promise}
    rows = await db.fetch(
        "SELECT status, lease_owner, attempts FROM subscription ORDER BY created_at, id"
    )
    assert [r["status"] for r in rows] == ["ready"] * 4
    assert [r["lease_owner"] for r in rows] == [OWNER, OWNER, None, None]
    assert [r["attempts"] for r in rows] == [1, 1, 0, 0]


async def test_a_second_completion_from_outside_changes_nothing(store: Store) -> None:
    await accept(store, "k")
    first = await store.promises.complete("k", "approval", value=[1, 2], room=0)
    again = await store.promises.complete("k", "approval", error="too late", room=0)
    assert first.changed
    assert not again.changed
    assert (again.promise.state, again.promise.value) == ("resolved", [1, 2])
    with pytest.raises(UnknownWorkflow):
        await store.promises.complete("nobody", "approval", value=1, room=0)


async def test_delete_refuses_unfinished_and_unknown_workflows(store: Store) -> None:
    run = await accept(store, "k")
    assert await store.runs.delete("k") is None  # still running
    with pytest.raises(UnknownWorkflow):
        await store.runs.delete("absent")
    await store.runs.complete(run, output="x", error=None, room=0)
    deleted = await store.runs.delete("k")
    assert deleted is not None
    assert deleted.key == "k"
    assert await store.reads.workflow("k") is None


async def test_retention_purges_old_finished_workflows_only(
    store: Store, db: asyncpg.Connection
) -> None:
    old = await accept(store, "old")
    await store.runs.complete(old, output="x", error=None, room=0)
    await accept(store, "running")
    await subscribe(store, "orphan", "a@example.com")  # a promise with no workflow
    await db.execute("UPDATE subscription SET status = 'expired'")
    await db.execute(
        "UPDATE workflow SET finished_at = now() - interval '2 hours' WHERE key = 'old';"
        "UPDATE promise SET created_at = now() - interval '2 hours' WHERE workflow_key = 'orphan'"
    )
    assert await store.runs.purge(retention_seconds=3600) == 2
    assert await db.fetchval("SELECT array_agg(key) FROM workflow") == ["running"]
    assert await db.fetchval("SELECT count(*) FROM promise") == 0  # both keys' promises went
    assert await db.fetchval("SELECT count(*) FROM subscription") == 0


async def test_lease_renewal_goes_through_when_every_ordinary_connection_is_taken(
    database_url: str, store: Store, db: asyncpg.Connection
) -> None:
    """The urgent lane keeps a connection that ordinary statements never take: a burst that
    holds all of them cannot delay renewals until leases lapse."""
    run = await accept(store, "k")
    blocker = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            "INSERT INTO workflow (key, query, status) VALUES ('held', 'q', 'pending')"
        )
        # Inserts of the same key wait for the blocker: four hold every ordinary connection
        # (the fixture's `connections`), the fifth waits for one.
        stuck = [asyncio.ensure_future(accept(store, "held")) for _ in range(5)]
        await until_blocked(db, 4)
        async with asyncio.timeout(5):
            renewed = await store.runs.renew_leases(
                run_keys=[run.key], subscription_ids=[], idempotent_requests=False
            )
        assert renewed == ({run.key}, set())
        assert not any(task.done() for task in stuck)
        await transaction.rollback()
        created = await asyncio.gather(*stuck, return_exceptions=True)
        assert sum(isinstance(result, WorkflowRow) for result in created) == 1
    finally:
        await blocker.close()


async def test_a_statement_waits_for_a_connection_no_longer_than_the_pool_would(
    database_url: str, db: asyncpg.Connection
) -> None:
    """All of the ordinary connections held (a database that hangs rather than refuses): the
    next statement fails as an outage after the wait, instead of queueing for ever."""
    engine = Database.connect(database_url, connections=1).engine
    database = Database(engine, connections=1, wait_seconds=0.3)
    store = store_of(database)
    blocker = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            "INSERT INTO workflow (key, query, status) VALUES ('held', 'q', 'pending')"
        )
        holding = asyncio.ensure_future(accept(store, "held"))
        await until_blocked(db, 1)
        with pytest.raises(DATABASE_ERRORS) as waited:
            await store.reads.schema_revision()
        assert is_outage(waited.value)
        await transaction.rollback()
        await holding
    finally:
        await blocker.close()
        await database.close()


async def test_the_cancel_of_a_run_whose_promise_completed_already_returns_it(
    store: Store, db: asyncpg.Connection
) -> None:
    await accept(store, "k")
    await db.execute(
        "INSERT INTO promise (workflow_key, name, state, value) "
        "VALUES ('k', 'agent_response', 'resolved', '\"by hand\"')"
    )
    cancellation = await store.runs.cancel("k", room=1)
    assert cancellation.cancelled
    assert cancellation.workflow.status == "cancelled"
    assert cancellation.deliveries == []


async def test_a_connection_closed_under_the_pool_is_replaced_not_used(
    database_url: str, db: asyncpg.Connection
) -> None:
    """A pooled connection whose driver connection was closed meanwhile (as a cancelled
    statement's invalidation can leave one) is never handed to a statement: each finds an open
    one."""
    database = Database.connect(database_url, connections=1)
    store = store_of(database)
    try:
        await accept(store, "k")
        async with database.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            await raw.driver_connection.close()  # closed under the pool, which keeps it
        for _ in range(5):
            assert (await store.reads.workflow("k")) is not None
    finally:
        await database.close()
