"""Reads: a workflow's whole state, single rows, pages of the list, and counts for /metrics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from app.db.batch import Batcher
from app.db.gateway import Database
from app.db.rows import (
    KeyOwner,
    PromiseRow,
    StateCounts,
    SubscriptionRow,
    Usage,
    WorkflowRow,
    WorkflowStatus,
    WorkflowSummary,
)
from app.states import AGENT_PROMISE, WorkflowState


class Reads:
    def __init__(self, database: Database) -> None:
        self._db = database
        # Workflow reads made while one is running go together in the next statement: a burst
        # of woken waiters (the fallback poll, a reconnect) reads in a few statements instead of
        # one each, and never holds up the pool for the runs finishing meanwhile.
        self._workflow_reads: Batcher[str, WorkflowRow | None] = Batcher(
            self._read_workflows, missing=None, max_batch=500
        )

    async def workflow(self, key: str) -> WorkflowRow | None:
        """The workflow's row as of a statement begun after this call, or None."""
        return await self._workflow_reads.submit(key)

    async def _read_workflows(self, keys: Sequence[str]) -> dict[str, WorkflowRow | None]:
        rows = await self._db.fetch("select_workflows", keys=list(set(keys)))
        workflows = [WorkflowRow.of(row["workflow_row"]) for row in rows]
        return {workflow.key: workflow for workflow in workflows}

    async def status(self, key: str) -> WorkflowStatus:
        """The workflow, its agent promise, every subscription and the run's usage, read in
        one snapshot."""
        async with self._db.transaction(isolation="repeatable_read") as statements:
            workflow = await statements.fetchrow("select_workflow", key=key)
            promise = await statements.fetchrow("select_promise", key=key, name=AGENT_PROMISE)
            subscriptions = await statements.fetch("workflow_subscriptions", key=key)
            usage = None if workflow is None else await statements.fetchrow("run_usage", key=key)
        return WorkflowStatus(
            key=key,
            workflow=None if workflow is None else WorkflowRow.of(workflow["workflow_row"]),
            promise=None if promise is None else PromiseRow.of(promise["promise_row"]),
            subscriptions=[SubscriptionRow.of(row["subscription_row"]) for row in subscriptions],
            usage=None if usage is None else Usage.of(usage),
        )

    async def page(
        self,
        *,
        status: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
        key_prefix: str | None = None,
        by: str | None = None,
    ) -> list[WorkflowSummary]:
        """Newest first; `before` is the (created_at, key) of the previous page's last row.
        With `by`, only the workflows that token created (on their own index)."""
        values = {
            "statuses": [status] if status is not None else list(WorkflowState),
            "key_prefix": key_prefix or "",
            "before_at": None if before is None else before[0],
            "before_key": None if before is None else before[1],
            "limit": limit,
        }
        if by is None:
            rows = await self._db.fetch("list_workflows", **values)
        else:
            rows = await self._db.fetch("list_own_workflows", created_by=by, **values)
        return [WorkflowSummary.of(row) for row in rows]

    async def key_owner(self, key: str) -> KeyOwner:
        """Whom the key belongs to: its workflow's creator, or before its run whoever claimed
        it by subscribing; `exists` False when nothing of it exists."""
        row = await self._db.fetchrow("key_owner", key=key)
        assert row is not None
        if row["has_workflow"]:
            return KeyOwner(exists=True, name=row["workflow_by"])
        return KeyOwner(exists=bool(row["has_promise"]), name=row["promise_by"])

    async def changed_keys(
        self, keys: list[str], *, since: datetime | None
    ) -> tuple[set[str], datetime]:
        """Of `keys`, those whose workflow or subscriptions changed after `since` (all of them
        when None), and the database's clock now, for the next call."""
        row = await self._db.fetchrow("changed_keys", keys=keys, since=since)
        assert row is not None
        return set(row["changed"]), row["now"]

    async def state_counts(self) -> StateCounts:
        """Rows by state, and work that is due with nobody holding it (for /metrics)."""
        counts = StateCounts()
        for row in await self._db.fetch("state_counts"):
            getattr(counts, row["family"])[row["status"]] = row["n"]
        return counts

    async def schema_revision(self) -> str | None:
        revision: str | None = await self._db.fetchval("schema_revision")
        return revision
