"""A later migration adds columns while replicas run: every statement, and every row the SQL
functions return, goes on working on the connections that cached them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from app.db import migrate
from app.db.connection import asyncpg_dsn
from app.db.gateway import Database
from app.db.rows import RunInput
from app.db.scope import Scope
from app.db.store import Store


@pytest.fixture
async def fresh_database(new_database: Callable[[], Awaitable[str]]) -> str:
    """A database of this test's own: it changes the schema."""
    url = await new_database()
    database = Database.connect(url, connections=1)
    try:
        await migrate.upgrade(database.engine)
    finally:
        await database.close()
    return url


async def round_trip(store: Store, key: str) -> None:
    """Every kind of statement the hot path runs, on the same pooled connection."""
    run, created = await store.runs.accept(key, RunInput("q"), leased=True)
    assert created
    subscription_id = uuid.uuid4()
    await store.subscriptions.subscribe(
        key, f"{key}@example.com", subscription_id=subscription_id, message_id="<m@x>", room=0
    )
    completion = await store.runs.complete(run, output="done", error=None, room=1)
    assert completion is not None
    assert [d.subscription.id for d in completion.deliveries] == [subscription_id]
    assert await store.subscriptions.mark_sent([subscription_id])
    assert (await store.reads.status(key)).subscriptions[0].status == "sent"
    assert (await store.reads.workflow(key)) is not None
    assert await store.promises.complete(key, "other", value=1, room=0)
    assert (await store.runs.cancel(key, room=0)).cancelled is False
    assert await store.runs.claim(limit=5) == []
    assert await store.reads.page(status=None, limit=5, before=None)


async def test_added_columns_break_no_cached_statement(fresh_database: str) -> None:
    database = Database.connect(fresh_database, connections=1)
    store = Store.of(database, Scope(owner="o", lease_seconds=30))
    try:
        await round_trip(store, "before")
        admin = await asyncpg.connect(asyncpg_dsn(fresh_database))
        try:
            await admin.execute(
                "ALTER TABLE workflow ADD COLUMN later_a text DEFAULT 'a';"
                "ALTER TABLE promise ADD COLUMN later_b text DEFAULT 'b';"
                "ALTER TABLE subscription ADD COLUMN later_c text DEFAULT 'c'"
            )
        finally:
            await admin.close()
        await round_trip(store, "after")
    finally:
        await database.close()
