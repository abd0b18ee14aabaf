"""Runs: accepting, claiming, retrying and completing workflows, and the leases on them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.durable.store.rows import (
    AGENT_PROMISE,
    CANCELLED,
    FINISHED_SQL,
    KEY_CHANNEL,
    LEASE_LOST_SQLSTATE,
    PROMISE_COLUMNS,
    WORK_CHANNEL,
    WORKFLOW_COLUMNS,
    Cancellation,
    Delivery,
    InputMismatch,
    LeaseLost,
    Queries,
    RunInput,
    UnknownWorkflow,
    WorkflowRow,
    leased_delivery,
    notify,
    workflow_of,
)
from app.durable.store.subscriptions import announce_completion


def _accept(values: str, announce: str) -> str:
    return f"""
        INSERT INTO workflow
            (key, query, model, instructions, status, attempts, lease_owner,
             lease_expires_at, started_at)
        VALUES ($1, $2, $3, $4, {values})
        ON CONFLICT (key) DO NOTHING
        RETURNING {WORKFLOW_COLUMNS} {announce}
    """


# The statements of every workflow's path, run on the driver (Queries._driver).
ACCEPT_LEASED = _accept("'running', 1, $5, now() + make_interval(secs => $6), now()", "")
# A run nobody leased is announced to every worker (the NOTIFY goes out at commit).
ACCEPT_FOR_ANY = _accept("'pending', 0, NULL, NULL, NULL", f", pg_notify('{WORK_CHANNEL}', 'run')")
SELECT_WORKFLOW = f"SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE key = $1"
COMPLETE_RUN = """
    SELECT * FROM agent_notify_complete_run($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""


class Runs(Queries):
    async def accept_run(
        self, key: str, run: RunInput, *, owner: str | None, lease_seconds: float
    ) -> tuple[WorkflowRow, bool]:
        """Insert the workflow, leased to `owner` (who executes it now) or left for any worker.

        Returns the row and whether it was created. Raises InputMismatch when the key exists
        with another input.
        """
        values = (key, run.query, run.model, run.instructions)
        async with self._driver() as connection:
            while True:
                if owner is not None:
                    row = await connection.fetchrow(ACCEPT_LEASED, *values, owner, lease_seconds)
                else:
                    row = await connection.fetchrow(ACCEPT_FOR_ANY, *values)
                if row is not None:
                    return workflow_of(row), True
                existing = await connection.fetchrow(SELECT_WORKFLOW, key)
                if existing is not None:
                    break
                # Deleted between the two statements (a DELETE, retention): insert again.
        workflow = workflow_of(existing)
        if workflow.input != run:
            raise InputMismatch(workflow)
        return workflow, False

    async def claim_runs(
        self, *, owner: str, lease_seconds: float, limit: int
    ) -> list[WorkflowRow]:
        """Lease unfinished runs that nobody holds (or whose holder died) and are due."""
        statement = text(f"""
            WITH claimable AS (
                SELECT key FROM workflow
                WHERE status IN ('pending', 'running') AND next_attempt_at <= now()
                  AND (lease_expires_at IS NULL OR lease_expires_at < now())
                ORDER BY next_attempt_at
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            )
            UPDATE workflow AS w
            SET status = 'running', lease_owner = :owner,
                lease_expires_at = now() + make_interval(secs => :lease),
                attempts = w.attempts + 1, started_at = coalesce(w.started_at, now()),
                updated_at = now()
            FROM claimable WHERE w.key = claimable.key
            RETURNING {", ".join("w." + c.strip() for c in WORKFLOW_COLUMNS.split(","))}
        """)
        async with self._single.connect() as connection:
            rows = await connection.execute(
                statement, {"owner": owner, "lease": lease_seconds, "limit": limit}
            )
            return [workflow_of(row) for row in rows]

    async def retry_run_later(
        self, key: str, *, created_at: datetime, owner: str, error: str, delay_seconds: float
    ) -> bool:
        """Give the run back, due again after the delay, with the last error recorded.

        The run is the one of `key` created at `created_at`: once a key is deleted and used
        again, a late retry of its earlier run leaves the new one alone."""
        statement = text("""
            UPDATE workflow
            SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, error = :error,
                next_attempt_at = now() + make_interval(secs => :delay), updated_at = now()
            WHERE key = :key AND created_at = :created_at AND lease_owner = :owner
              AND status = 'running'
        """)
        params = {
            "key": key,
            "created_at": created_at,
            "owner": owner,
            "error": error,
            "delay": delay_seconds,
        }
        async with self._single.connect() as connection:
            result = await connection.execute(statement, params)
            return result.rowcount == 1

    async def complete_run(
        self,
        key: str,
        *,
        created_at: datetime,
        owner: str,
        output: str | None,
        error: str | None,
        deliver_to: str,
        room: int,
        lease_seconds: float,
        notify_on_failure: bool,
    ) -> tuple[WorkflowRow, list[Delivery]] | None:
        """Finish a leased run: record it, complete its promise, make its subscribers ready.

        `output` for success, `error` for a terminal failure. The oldest `room` of the
        subscriptions made ready (the room the caller's delivery worker reserved: one, as most
        runs have one subscriber) are leased to `deliver_to` and returned; the rest are left
        for any worker, woken by a NOTIFY. `created_at` names the run: an earlier run of
        a key since deleted and started again cannot finish the new one.
        Returns None when `owner` no longer holds the lease (another process took the run over,
        or it was cancelled); then nothing changed.

        One statement: agent_notify_complete_run() (migration 0004) runs the transaction that
        this did in five round trips, in the same lock order.
        """
        try:
            async with self._driver() as connection:
                row = await connection.fetchrow(
                    COMPLETE_RUN,
                    key,
                    created_at,
                    owner,
                    output,
                    error,
                    deliver_to,
                    room,
                    lease_seconds,
                    notify_on_failure,
                    AGENT_PROMISE,
                    KEY_CHANNEL,
                    WORK_CHANNEL,
                )
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == LEASE_LOST_SQLSTATE:
                return None
            raise
        assert row is not None  # the function returns one row or raises
        deliveries = [
            leased_delivery(
                subscription_id,
                attempts,
                email=email,
                message_id=message_id,
                workflow_key=key,
                promise_state=row["promise_state"],
                promise_value_json=row["promise_value_json"],
                promise_error=row["promise_error"],
            )
            for subscription_id, email, message_id, attempts in zip(
                row["delivery_ids"],
                row["delivery_emails"],
                row["delivery_message_ids"],
                row["delivery_attempts"],
                strict=True,
            )
        ]
        return workflow_of(row), deliveries

    async def cancel_workflow(
        self,
        key: str,
        *,
        deliver_to: str,
        reserve: Callable[[int], int],
        lease_seconds: float,
        notify_on_failure: bool,
    ) -> Cancellation:
        """Cancel a pending or running workflow: its promise is rejected as cancelled and its
        subscribers readied to be told. A finished one is returned unchanged; UnknownWorkflow
        if there is none. Whoever runs it sees its lease gone and abandons the call."""
        try:
            async with self._engine.begin() as connection:
                promise = await _complete_agent_promise(
                    connection, key, output=None, error=CANCELLED
                )
                row = (
                    await connection.execute(
                        text(f"""
                            UPDATE workflow
                            SET status = 'cancelled', error = :error, lease_owner = NULL,
                                lease_expires_at = NULL, finished_at = now(), updated_at = now()
                            WHERE key = :key AND status IN ('pending', 'running')
                            RETURNING {WORKFLOW_COLUMNS}
                        """),
                        {"key": key, "error": CANCELLED},
                    )
                ).one_or_none()
                if row is None:
                    raise LeaseLost(key)  # nothing to cancel: roll the promise back
                deliveries = await announce_completion(
                    connection,
                    key,
                    AGENT_PROMISE,
                    deliver_to=deliver_to,
                    reserve=reserve,
                    lease_seconds=lease_seconds,
                    notify_on_failure=notify_on_failure,
                    promise=promise,
                )
                return Cancellation(workflow_of(row), cancelled=True, deliveries=deliveries)
        except LeaseLost:
            pass
        async with self._engine.connect() as connection:
            current = (
                await connection.execute(
                    text(f"SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE key = :key"),
                    {"key": key},
                )
            ).one_or_none()
        if current is None:
            raise UnknownWorkflow(key)
        return Cancellation(workflow_of(current), cancelled=False, deliveries=[])

    async def delete_workflow(self, key: str) -> WorkflowRow | None:
        """Delete a finished workflow with its promises and subscriptions, so the key can be
        used again. Returns the deleted row; None if it is not finished or has emails still
        being sent (nothing is deleted then). UnknownWorkflow if there is none."""
        async with self._engine.begin() as connection:
            # Promise rows first, as everywhere: a subscriber waiting on one is not lost to the
            # cascade, and the checks below see every subscription committed before.
            await connection.execute(
                text("SELECT 1 FROM promise WHERE workflow_key = :key FOR UPDATE"), {"key": key}
            )
            row = (
                await connection.execute(
                    text(f"""
                        DELETE FROM workflow
                        WHERE key = :key AND status IN {FINISHED_SQL}
                          AND NOT EXISTS (
                              SELECT 1 FROM subscription
                              WHERE workflow_key = :key AND status IN ('waiting', 'ready')
                          )
                        RETURNING {WORKFLOW_COLUMNS}
                    """),
                    {"key": key},
                )
            ).one_or_none()
            if row is None:
                exists = await connection.scalar(
                    text("SELECT 1 FROM workflow WHERE key = :key"), {"key": key}
                )
                if exists is None:
                    raise UnknownWorkflow(key)
                return None
            # Subscriptions go with their promise (ON DELETE CASCADE).
            await connection.execute(
                text("DELETE FROM promise WHERE workflow_key = :key"), {"key": key}
            )
            return workflow_of(row)

    async def purge_expired(self, *, retention_seconds: float, limit: int = 500) -> int:
        """Retention: delete workflows finished longer ago than the retention (and their
        promises and subscriptions), and promises no run ever completed whose subscribers have
        all given up; returns how many keys went."""
        old = {"retention": retention_seconds, "limit": limit}
        async with self._engine.begin() as connection:
            candidates = (
                await connection.scalars(
                    text(f"""
                        SELECT key FROM workflow
                        WHERE status IN {FINISHED_SQL}
                          AND finished_at < now() - make_interval(secs => :retention)
                        ORDER BY finished_at
                        LIMIT :limit
                    """),
                    old,
                )
            ).all()
            orphans = (
                await connection.scalars(
                    text("""
                        SELECT DISTINCT workflow_key FROM promise AS p
                        WHERE p.created_at < now() - make_interval(secs => :retention)
                          AND NOT EXISTS (SELECT 1 FROM workflow AS w WHERE w.key = p.workflow_key)
                        LIMIT :limit
                    """),
                    old,
                )
            ).all()
            keys = list({*candidates, *orphans})
            if not keys:
                return 0
            # Promise rows first, as everywhere; rows busy elsewhere wait for the next sweep.
            locked = {
                (row.workflow_key, row.name)
                for row in await connection.execute(
                    text("""
                        SELECT workflow_key, name FROM promise WHERE workflow_key = ANY(:keys)
                        FOR UPDATE SKIP LOCKED
                    """),
                    {"keys": keys},
                )
            }
            every = {
                (row.workflow_key, row.name)
                for row in await connection.execute(
                    text("SELECT workflow_key, name FROM promise WHERE workflow_key = ANY(:keys)"),
                    {"keys": keys},
                )
            }
            in_flight = set(
                (
                    await connection.scalars(
                        text("""
                            SELECT DISTINCT workflow_key FROM subscription
                            WHERE workflow_key = ANY(:keys) AND status IN ('waiting', 'ready')
                        """),
                        {"keys": keys},
                    )
                ).all()
            )
            busy = {key for key, _name in every - locked} | in_flight
            doomed = [key for key in keys if key not in busy]
            await connection.execute(
                text(f"""
                    DELETE FROM workflow WHERE key = ANY(:keys) AND status IN {FINISHED_SQL}
                """),
                {"keys": doomed},
            )
            # Only the rows locked here: a promise created meanwhile stays (and its subscriber).
            await connection.execute(
                text("""
                    DELETE FROM promise
                    WHERE workflow_key = ANY(:keys) AND (workflow_key, name) IN (
                        SELECT * FROM unnest(CAST(:locked_keys AS text[]),
                                             CAST(:locked_names AS text[]))
                    )
                """),
                {
                    "keys": doomed,
                    "locked_keys": [key for key, _ in locked],
                    "locked_names": [name for _, name in locked],
                },
            )
            return len(doomed)

    async def release_leases(self, *, owner: str) -> None:
        """Hand back what this process holds but will not finish, so others take it at once."""
        async with self._engine.begin() as connection:
            await connection.execute(
                text("""
                    UPDATE workflow
                    SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                        updated_at = now()
                    WHERE lease_owner = :owner AND status = 'running'
                """),
                {"owner": owner},
            )
            await connection.execute(
                text("""
                    UPDATE subscription SET lease_owner = NULL, lease_expires_at = NULL,
                        updated_at = now()
                    WHERE lease_owner = :owner AND status = 'ready'
                """),
                {"owner": owner},
            )
            await notify(connection, WORK_CHANNEL, "released")


RENEW_LEASES = """
    WITH runs AS (
        UPDATE workflow SET lease_expires_at = now() + make_interval(secs => $2)
        WHERE key = ANY($3::text[]) AND lease_owner = $1 AND status = 'running'
        RETURNING 1
    ), deliveries AS (
        UPDATE subscription SET lease_expires_at = now() + make_interval(secs => $2)
        WHERE id = ANY($4::uuid[]) AND lease_owner = $1 AND status = 'ready'
        RETURNING 1
    ), requests AS (
        UPDATE idempotency_key SET claim_expires_at = now() + make_interval(secs => $2)
        WHERE $5 AND claimed_by = $1 AND status_code IS NULL
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM deliveries) AS deliveries
"""


async def renew_leases(
    connection: asyncpg.Connection,
    *,
    owner: str,
    lease_seconds: float,
    run_keys: list[str],
    subscription_ids: list[uuid.UUID],
    idempotent_requests: bool = False,
) -> tuple[int, int]:
    """Extend the leases of the runs and deliveries this process is working on, in one
    statement; returns how many of each were renewed. (A row the process holds but no longer
    works on is not renewed: its lease lapses and someone else takes it.) With
    `idempotent_requests`, the claims of the Idempotency-Keys it is answering are renewed too.

    It runs on the process's LISTEN connection, not the query pool: a pool saturated by a burst
    of requests must never delay renewals until leases lapse and others take the work over.
    """
    row = await connection.fetchrow(
        RENEW_LEASES, owner, float(lease_seconds), run_keys, subscription_ids, idempotent_requests
    )
    assert row is not None
    return row["runs"], row["deliveries"]


async def _complete_agent_promise(
    connection: AsyncConnection, key: str, *, output: str | None, error: str | None
) -> Row[Any] | None:
    """Resolve (no `error`) or reject the agent's promise unless it is complete already, taking
    the promise row's lock first, as every transaction does. Returns the promise (PROMISE_COLUMNS)
    if this completed it, None if it was complete already."""
    row: Row[Any] | None = (
        await connection.execute(
            text(f"""
                INSERT INTO promise (workflow_key, name, state, value, error, completed_at)
                VALUES (:key, :name, :state, CAST(:value AS jsonb), :error, now())
                ON CONFLICT (workflow_key, name) DO UPDATE
                SET state = excluded.state, value = excluded.value, error = excluded.error,
                    completed_at = excluded.completed_at
                WHERE promise.state = 'pending'
                RETURNING {PROMISE_COLUMNS}
            """),
            {
                "key": key,
                "name": AGENT_PROMISE,
                "state": "resolved" if error is None else "rejected",
                "value": json.dumps(output) if error is None else None,
                "error": error,
            },
        )
    ).one_or_none()
    return row
