"""Reads: a workflow's whole state, single rows, and counts for /metrics."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.durable.batch import Batcher
from app.durable.store.rows import (
    AGENT_PROMISE,
    SUBSCRIPTION_COLUMNS,
    WORKFLOW_COLUMNS,
    Queries,
    StateCounts,
    SubscriptionRow,
    WorkflowRow,
    WorkflowStatus,
    WorkflowSummary,
    promise_of,
    select_promise,
    subscription_of,
    workflow_of,
)

READ_WORKFLOWS = text(f"SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE key = ANY(:keys)")


class Reads(Queries):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # Workflow reads made while one is running go together in the next statement: a burst
        # of woken waiters (the fallback poll, a reconnect) reads in a few statements instead of
        # one each, and never holds up the pool for the runs finishing meanwhile.
        self._workflow_reads: Batcher[str, WorkflowRow | None] = Batcher(
            self._read_workflows, missing=None, max_batch=500
        )

    async def list_workflows(
        self,
        *,
        status: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
        key_prefix: str | None = None,
    ) -> list[WorkflowSummary]:
        """Newest first; `before` is the (created_at, key) of the last row of the previous page,
        so rows inserted meanwhile never shift a page. `key_prefix` keeps only the keys that
        start with it, compared as plain text: no character of it is a wildcard."""
        conditions = []
        if status is not None:
            conditions.append("status = :status")
        if key_prefix:
            # starts_with, not LIKE: '%' and '_' in the prefix match only themselves.
            conditions.append("starts_with(key, :key_prefix)")
        if before is not None:
            conditions.append("(created_at, key) < (:before_at, :before_key)")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        statement = text(f"""
            SELECT key, status, left(query, 200) AS query, model, attempts,
                   left(error, 200) AS error, created_at, updated_at, finished_at,
                   (SELECT count(*) FROM subscription AS s WHERE s.workflow_key = w.key)
                       AS subscribers,
                   (SELECT count(*) FROM subscription AS s
                    WHERE s.workflow_key = w.key AND s.status = 'sent') AS notified
            FROM workflow AS w
            {where}
            ORDER BY created_at DESC, key DESC
            LIMIT :limit
        """)
        params: dict[str, object] = {"status": status, "limit": limit, "key_prefix": key_prefix}
        if before is not None:
            params.update(before_at=before[0], before_key=before[1])
        async with self._single.connect() as connection:
            rows = await connection.execute(statement, params)
            return [WorkflowSummary(**row._asdict()) for row in rows]

    async def changed_keys(
        self, keys: list[str], *, since: datetime | None
    ) -> tuple[set[str], datetime]:
        """Of `keys`, those whose workflow or subscriptions changed after `since` (all of them
        when None), and the database's clock now, for the next call."""
        statement = text("""
            SELECT now() AS now, ARRAY(
                SELECT key FROM workflow
                WHERE key = ANY(:keys)
                  AND (CAST(:since AS timestamptz) IS NULL OR updated_at > :since)
                UNION
                SELECT workflow_key FROM subscription
                WHERE workflow_key = ANY(:keys)
                  AND (CAST(:since AS timestamptz) IS NULL OR updated_at > :since)
            ) AS changed
        """)
        async with self._single.connect() as connection:
            row = (await connection.execute(statement, {"keys": keys, "since": since})).one()
            return set(row.changed), row.now

    async def state_counts(self) -> StateCounts:
        """Rows by state, and work that is due with nobody holding it (for /metrics)."""
        statement = text("""
            SELECT 'workflow' AS family, status, count(*) AS n FROM workflow GROUP BY status
            UNION ALL
            SELECT 'subscription', status, count(*) FROM subscription GROUP BY status
            UNION ALL
            SELECT 'claimable', 'run', count(*) FROM workflow
            WHERE status IN ('pending', 'running') AND next_attempt_at <= now()
              AND (lease_expires_at IS NULL OR lease_expires_at < now())
            UNION ALL
            SELECT 'claimable', 'delivery', count(*) FROM subscription
            WHERE status = 'ready' AND next_attempt_at <= now()
              AND (lease_expires_at IS NULL OR lease_expires_at < now())
        """)
        counts = StateCounts()
        async with self._single.connect() as connection:
            for family, status, n in await connection.execute(statement):
                getattr(counts, family)[status] = n
        return counts

    async def get_workflow(self, key: str) -> WorkflowRow | None:
        """The workflow's row as of a statement begun after this call, or None."""
        return await self._workflow_reads.submit(key)

    async def _read_workflows(self, keys: Sequence[str]) -> dict[str, WorkflowRow | None]:
        async with self._single.connect() as connection:
            rows = await connection.execute(READ_WORKFLOWS, {"keys": list(set(keys))})
            return {row.key: workflow_of(row) for row in rows}

    async def get_subscription(self, subscription_id: uuid.UUID) -> SubscriptionRow | None:
        async with self._single.connect() as connection:
            row = (
                await connection.execute(
                    text(f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscription WHERE id = :id"),
                    {"id": subscription_id},
                )
            ).one_or_none()
            return None if row is None else subscription_of(row)

    async def workflow_status(self, key: str) -> WorkflowStatus:
        """The workflow, its agent promise and every subscription, read in one snapshot."""
        async with self._engine.connect() as connection:
            await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            workflow = (
                await connection.execute(
                    text(f"SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE key = :key"),
                    {"key": key},
                )
            ).one_or_none()
            promise = await select_promise(connection, key, AGENT_PROMISE)
            subscriptions = await connection.execute(
                text(f"""
                    SELECT {SUBSCRIPTION_COLUMNS} FROM subscription
                    WHERE workflow_key = :key ORDER BY created_at, id
                """),
                {"key": key},
            )
            return WorkflowStatus(
                key=key,
                workflow=None if workflow is None else workflow_of(workflow),
                promise=None if promise is None else promise_of(promise),
                subscriptions=[subscription_of(row) for row in subscriptions],
            )
