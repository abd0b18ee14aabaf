"""The listener's fan-out to in-memory waiters (no connection needed for these)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.db.rows import WorkflowRow
from app.db.scope import KEY_CHANNEL
from app.engine.listener import Listener

NOW = datetime.now(UTC)


def finished_row(key: str) -> WorkflowRow:
    return WorkflowRow(
        key=key, query="q", model=None, instructions=None, status="succeeded", output="a",
        error=None, attempts=1, lease_owner=None, lease_expires_at=None, next_attempt_at=NOW,
        created_at=NOW, updated_at=NOW, started_at=NOW, finished_at=NOW,
    )  # fmt: skip


def notify(listener: Listener, payload: str) -> None:
    listener._on_notification(None, 0, KEY_CHANNEL, payload)


async def test_a_local_commit_holds_its_keys_notifications_then_wakes_every_waiter() -> None:
    listener = Listener("postgresql://unused")
    with (
        listener.watch("k") as workflow_waiter,
        listener.watch("k", "s1") as subscription_waiter,
        listener.watch("other") as other_waiter,
    ):
        with listener.committing("k") as handover:
            notify(listener, "k")
            notify(listener, "k s1")
            notify(listener, "other")
            assert not workflow_waiter.is_set()
            assert not subscription_waiter.is_set()
            assert other_waiter.is_set()  # only the committed key is held back
            handover.finished = finished_row("k")
        assert workflow_waiter.is_set()
        assert workflow_waiter.finished == handover.finished
        assert subscription_waiter.is_set()
        # Once the commit is over, the key's notifications pass again.
        workflow_waiter.clear()
        notify(listener, "k")
        assert workflow_waiter.is_set()


async def test_waiters_are_woken_when_the_commit_fails_and_nested_commits_hold_to_the_end() -> None:
    listener = Listener("postgresql://unused")
    with listener.watch("k") as waiter:
        with pytest.raises(RuntimeError), listener.committing("k"):
            raise RuntimeError("lease lost, cancelled, …")
        assert waiter.is_set()
        assert waiter.finished is None  # nothing handed over: the waiter reads the row
        waiter.clear()
        with listener.committing("k"):
            with listener.committing("k"):
                pass
            waiter.clear()  # the inner one woke it; the outer one still holds notifications
            notify(listener, "k")
            assert not waiter.is_set()
        assert waiter.is_set()
