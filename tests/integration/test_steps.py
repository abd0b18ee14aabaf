"""The step journal's statements on a real Postgres: each begins and finishes a step only under
the run's lease, re-executes an unfinished step under its id, and never touches another run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.db.gateway import Database
from app.db.rows import RunInput, WorkflowRow
from app.db.scope import Scope
from app.db.store import Store
from app.states import StepKind, StepState

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


async def accept(store: Store, key: str, run: RunInput | None = None) -> WorkflowRow:
    workflow, created = await store.runs.accept(key, run or RunInput("q"), leased=True)
    assert created
    return workflow


async def begin(store: Store, run: WorkflowRow, seq: int, *, attempts: int = 1) -> object:
    return await store.steps.begin(
        key=run.key,
        created_at=run.created_at,
        attempts=attempts,
        seq=seq,
        kind=StepKind.TOOL,
        name="add",
        input={"a": 1, "b": 2},
    )


async def test_a_step_is_journaled_and_an_unfinished_one_runs_again_under_its_id(
    store: Store, db: asyncpg.Connection
) -> None:
    run = await accept(store, "s1")
    lease_before = await db.fetchval("SELECT lease_expires_at FROM workflow WHERE key = 's1'")
    step = await begin(store, run, 0)
    assert step is not None
    assert step.status == StepState.RUNNING
    assert step.attempts == 1
    assert step.input == {"a": 1, "b": 2}
    # The statement renewed the lease, as the fence does.
    lease_after = await db.fetchval("SELECT lease_expires_at FROM workflow WHERE key = 's1'")
    assert lease_after > lease_before

    again = await begin(store, run, 0)
    assert again is not None
    assert again.id == step.id
    assert again.attempts == 2

    finished = await store.steps.finish(
        step.id,
        status=StepState.SUCCEEDED,
        output={"content": "3", "is_error": False},
        input_tokens=3,
        output_tokens=4,
        cost_usd=0.5,
    )
    assert finished is not None
    assert finished.finished_at is not None
    # A step with a result is never begun again, nor finished twice.
    assert await begin(store, run, 0) is None
    assert await store.steps.finish(step.id, status=StepState.FAILED, output={"x": 1}) is None
    [journaled] = await store.steps.of_run(run.key, run.created_at)
    assert journaled.output == {"content": "3", "is_error": False}
    assert journaled.input_tokens == 3
    assert journaled.cost_usd == 0.5

    status = await store.reads.status("s1")
    assert status.usage is not None
    assert (status.usage.input_tokens, status.usage.output_tokens) == (3, 4)


async def test_no_step_begins_or_finishes_without_the_lease(
    store: Store, database: Database
) -> None:
    run = await accept(store, "s2")
    step = await begin(store, run, 0)
    assert step is not None
    other = store_of(database, owner="someone-else")
    # Another process, or another attempt of this one: no step.
    assert await begin(other, run, 1) is None
    assert await begin(store, run, 1, attempts=2) is None
    assert await other.steps.finish(step.id, status=StepState.SUCCEEDED, output={}) is None

    await store.runs.cancel("s2", room=0)
    assert await begin(store, run, 1) is None
    assert await store.steps.finish(step.id, status=StepState.SUCCEEDED, output={}) is None


async def test_a_late_step_of_a_deleted_run_does_not_touch_the_keys_new_run(
    store: Store, db: asyncpg.Connection
) -> None:
    old = await accept(store, "s3")
    old_step = await begin(store, old, 0)
    assert old_step is not None
    await store.runs.complete(old, output="done", error=None, room=0)
    assert await store.runs.delete("s3") is not None
    assert await db.fetchval("SELECT count(*) FROM step") == 0  # gone with its workflow

    new = await accept(store, "s3", RunInput("q"))
    new_step = await begin(store, new, 0)
    assert new_step is not None
    assert new_step.id != old_step.id
    # The old run's process, late: neither its begin nor its finish reaches the new run.
    assert await begin(store, old, 0) is None
    assert await begin(store, old, 1) is None
    assert await store.steps.finish(old_step.id, status=StepState.SUCCEEDED, output={}) is None
    [current] = await store.steps.of_run(new.key, new.created_at)
    assert current.id == new_step.id
    assert current.status == StepState.RUNNING
    assert current.output is None
    assert current.attempts == 1
    assert await store.steps.of_run(old.key, old.created_at) == []


async def test_the_runs_options_are_part_of_its_input(store: Store) -> None:
    run = RunInput("q", tools=("add", "multiply"), max_steps=3)
    workflow = await accept(store, "s4", run)
    assert workflow.input == run
    again, created = await store.runs.accept("s4", run, leased=True)
    assert not created
    assert again.input == run
