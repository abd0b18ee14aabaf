"""The fence before every effect: a process makes a model call or sends an email only while
this attempt of this process still holds the lease — whatever it believed when it took it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from app.db.rows import RunInput
from app.db.scope import Scope
from app.db.store import Store
from app.engine.fence import LeaseBook
from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM
from tests.fakes.smtp import Inbox
from tests.helpers import eventually

LONG_AGO = 10_000.0  # seconds: the process was paused (or its queue was long) since


def other_process(app: RunningApp) -> Store:
    """The same database, as another replica sees it."""
    return Store.of(app.app.state.process.store.database, Scope(owner="other", lease_seconds=30))


async def idle(app: RunningApp) -> None:
    process = app.app.state.process
    await eventually(
        lambda: _zero(process.runner.inflight + process.delivery.inflight), bool, timeout=10
    )


async def _zero(count: int) -> bool:
    return count == 0


@pytest.mark.parametrize("taken_over", [True, False])
async def test_a_run_whose_lease_passed_on_is_not_sent_to_the_model(
    start_app: Callable[..., Awaitable[RunningApp]],
    fake_llm: FakeLLM,
    db: asyncpg.Connection,
    taken_over: bool,
) -> None:
    app = await start_app()
    process = app.app.state.process
    run, _ = await process.store.runs.accept("k", RunInput("late"), leased=True)
    await db.execute("UPDATE workflow SET lease_expires_at = now() - interval '1 second'")
    if taken_over:
        [claimed] = await other_process(app).runs.claim(limit=1)
        assert (claimed.lease_owner, claimed.attempts) == ("other", 2)
    # This process resumes with the run it leased long ago and never called the model for.
    process.runner.submit(run, leased_at=LeaseBook.now() - LONG_AGO)
    await idle(app)
    row = await db.fetchrow("SELECT status, lease_owner FROM workflow")
    if taken_over:
        assert fake_llm.calls_for("late") == 0
        assert (row["status"], row["lease_owner"]) == ("running", "other")
    else:
        # Nobody took it: confirming the lease renewed it, and the run went on, once.
        assert fake_llm.calls_for("late") == 1
        assert row["status"] == "succeeded"


@pytest.mark.parametrize("taken_over", [True, False])
async def test_a_delivery_whose_lease_passed_on_is_not_sent(
    start_app: Callable[..., Awaitable[RunningApp]],
    inbox: Inbox,
    db: asyncpg.Connection,
    taken_over: bool,
) -> None:
    app = await start_app()
    process = app.app.state.process
    assert (await app.client.post("/workflows/k/run", json="q")).status_code == 200
    subscribed = await process.store.subscriptions.subscribe(
        "k", "late@example.com", subscription_id=uuid.uuid4(), message_id="<m@x>", room=1
    )
    assert subscribed.delivery is not None
    await db.execute("UPDATE subscription SET lease_expires_at = now() - interval '1 second'")
    if taken_over:
        [claimed] = await other_process(app).subscriptions.claim(limit=1)
        assert claimed.subscription.lease_owner == "other"
    process.delivery.submit(subscribed.delivery, leased_at=LeaseBook.now() - LONG_AGO)
    await idle(app)
    status = await db.fetchval("SELECT status FROM subscription")
    if taken_over:
        assert inbox.to("late@example.com") == []
        assert status == "ready"  # the other process's to send
    else:
        assert len(inbox.to("late@example.com")) == 1
        assert status == "sent"
