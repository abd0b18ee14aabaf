"""The journal holds a finished step's result for the statement that begins the next step, and
only when no other step is in flight or beginning: a result is never left in memory while
another step's effect runs (app/workflows/journal.py), on a real Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.db.connection import asyncpg_dsn
from app.db.gateway import Database
from app.db.rows import RunInput, WorkflowRow
from app.db.scope import Scope
from app.db.store import Store
from app.metrics import Metrics
from app.states import StepKind, StepState
from app.workflows.journal import RunJournal
from tests.helpers import eventually

RESULT = {"content": "3", "is_error": False}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    database = Database.connect(database_url, connections=4)
    try:
        yield Store.of(database, Scope(owner="journal-owner", lease_seconds=30))
    finally:
        await database.close()


async def leased_run(store: Store, key: str) -> WorkflowRow:
    run, created = await store.runs.accept(key, RunInput("q"), leased=True)
    assert created
    return run


def journal_of(store: Store, run: WorkflowRow) -> RunJournal:
    async def fence() -> bool:
        return True

    return RunJournal(
        store.steps,
        run,
        attempts=lambda: 1,
        renewed=lambda _started: None,
        fence=fence,
        metrics=Metrics(),
    )


async def statuses(db: asyncpg.Connection, key: str) -> dict[int, str]:
    rows = await db.fetch("SELECT seq, status FROM step WHERE workflow_key = $1", key)
    return {row["seq"]: row["status"] for row in rows}


async def blocked_on_locks(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def test_a_result_finished_beside_a_beginning_call_is_written_at_once(
    store: Store, db: asyncpg.Connection, database_url: str
) -> None:
    """Two calls of one turn: the first finishes while the second's begin is still under way
    (held up on the run's row). Its result is written then, not kept for a later begin."""
    run = await leased_run(store, "hold1")
    journal = journal_of(store, run)
    turn = await journal.begin(0, StepKind.LLM, "model", [])
    assert turn is not None
    assert await journal.finish(turn, status=StepState.SUCCEEDED, output={"role": "assistant"})
    assert await statuses(db, "hold1") == {}  # held: the next begin writes it
    first = await journal.begin(1, StepKind.TOOL, "add", {"a": 1})
    assert first is not None
    assert await statuses(db, "hold1") == {0: "succeeded", 1: "running"}

    blocker = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        locking = blocker.transaction()
        await locking.start()
        await blocker.execute("SELECT 1 FROM workflow WHERE key = 'hold1' FOR UPDATE")
        second = asyncio.create_task(journal.begin(2, StepKind.TOOL, "add", {"a": 2}))
        await eventually(lambda: blocked_on_locks(db), lambda blocked: blocked >= 1)
        assert await journal.finish(first, status=StepState.SUCCEEDED, output=RESULT)
        assert (await statuses(db, "hold1"))[1] == "succeeded"
        await locking.rollback()
        second_id = await second
    finally:
        await blocker.close()
    assert second_id is not None
    # The last of the turn's calls to finish is held for the next turn's begin.
    assert await journal.finish(second_id, status=StepState.SUCCEEDED, output=RESULT)
    assert (await statuses(db, "hold1"))[2] == "running"
    assert await journal.begin(3, StepKind.LLM, "model", []) is not None
    assert await statuses(db, "hold1") == {
        0: "succeeded",
        1: "succeeded",
        2: "succeeded",
        3: "running",
    }


async def test_flush_writes_the_held_result_and_a_failed_model_call_is_never_held(
    store: Store, db: asyncpg.Connection
) -> None:
    run = await leased_run(store, "hold2")
    journal = journal_of(store, run)
    turn = await journal.begin(0, StepKind.LLM, "model", [])
    assert turn is not None
    assert await journal.finish(turn, status=StepState.SUCCEEDED, output={"role": "assistant"})
    call = await journal.begin(1, StepKind.TOOL, "add", {})
    assert call is not None
    assert await journal.finish(call, status=StepState.FAILED, output=RESULT, error="no")
    assert await statuses(db, "hold2") == {0: "succeeded", 1: "running"}  # held
    assert await journal.flush()
    assert await statuses(db, "hold2") == {0: "succeeded", 1: "failed"}
    assert await journal.flush()  # nothing held: nothing written
    # A model call that failed has no result to hold: journaled at once.
    again = await journal.begin(2, StepKind.LLM, "model", [])
    assert again is not None
    assert await journal.finish(again, status=StepState.FAILED, output=None, error="503")
    assert (await statuses(db, "hold2"))[2] == "failed"
