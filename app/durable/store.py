"""Every SQL statement that moves a workflow, promise or subscription between states.

Each public method is one short transaction named after what it does. Lock order, everywhere:
the promise row first, then the workflow row, then subscription rows. The promise row lock is
what serialises a subscriber's insert with the promise's completion (no lost wake-up).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.mailer import Notification

AGENT_PROMISE = "agent_response"
# Channel for "this workflow's rows changed" (payload: the key) and for "claimable work exists".
KEY_CHANNEL = "agent_notify"
WORK_CHANNEL = "agent_notify_work"

FINISHED_WORKFLOW_STATES = frozenset({"succeeded", "failed", "cancelled"})
FINISHED_SUBSCRIPTION_STATES = frozenset({"sent", "failed", "cancelled", "expired"})

WORKFLOW_COLUMNS = """
    key, query, model, instructions, status, output, error, attempts, lease_owner,
    lease_expires_at, next_attempt_at, created_at, updated_at, started_at, finished_at
"""
SUBSCRIPTION_COLUMNS = """
    id, workflow_key, promise_name, email, status, message_id, attempts, last_error,
    lease_owner, lease_expires_at, next_attempt_at, created_at, updated_at, ready_at, sent_at
"""
PROMISE_COLUMNS = (
    "workflow_key, name, state, value::text AS value_json, error, created_at, completed_at"
)


@dataclass(frozen=True, slots=True)
class RunInput:
    query: str
    model: str | None = None
    instructions: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    key: str
    query: str
    model: str | None
    instructions: str | None
    status: str
    output: str | None
    error: str | None
    attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def input(self) -> RunInput:
        return RunInput(self.query, self.model, self.instructions)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_WORKFLOW_STATES


@dataclass(frozen=True, slots=True)
class PromiseRow:
    workflow_key: str
    name: str
    state: str
    value: object
    error: str | None
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    id: uuid.UUID
    workflow_key: str
    promise_name: str
    email: str
    status: str
    message_id: str
    attempts: int
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    sent_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_SUBSCRIPTION_STATES


@dataclass(frozen=True, slots=True)
class Delivery:
    """A ready subscription leased to this process, with everything needed to send it."""

    subscription_id: uuid.UUID
    attempts: int
    notification: Notification


@dataclass(frozen=True, slots=True)
class Subscribed:
    subscription: SubscriptionRow
    created: bool
    # Set when the promise was already complete: the delivery, leased to the caller.
    delivery: Delivery | None


@dataclass(frozen=True, slots=True)
class StateCounts:
    workflow: dict[str, int] = field(default_factory=dict)
    subscription: dict[str, int] = field(default_factory=dict)
    claimable: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    key: str
    workflow: WorkflowRow | None
    promise: PromiseRow | None
    subscriptions: list[SubscriptionRow]


class _LeaseLost(Exception):
    """Raised inside a transaction to roll it back: another process holds the row now."""


class InputMismatch(Exception):
    """The key exists with a different input."""

    def __init__(self, existing: WorkflowRow) -> None:
        super().__init__(existing.key)
        self.existing = existing


def _workflow(row: Row[Any]) -> WorkflowRow:
    return WorkflowRow(**row._asdict())


def _subscription(row: Row[Any]) -> SubscriptionRow:
    return SubscriptionRow(**row._asdict())


def _promise(row: Row[Any]) -> PromiseRow:
    data = row._asdict()
    value_json = data.pop("value_json")
    return PromiseRow(**data, value=None if value_json is None else json.loads(value_json))


def _delivery(subscription: Row[Any], promise: Row[Any]) -> Delivery:
    """A delivery from a subscription row and its promise's state, value_json and error."""
    return Delivery(
        subscription_id=subscription.id,
        attempts=subscription.attempts,
        notification=Notification(
            email=subscription.email,
            message_id=subscription.message_id,
            workflow_key=subscription.workflow_key,
            resolved=promise.state == "resolved",
            value=None if promise.value_json is None else json.loads(promise.value_json),
            error=promise.error,
        ),
    )


async def _notify(connection: AsyncConnection, channel: str, payload: str) -> None:
    await connection.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )


class Store:
    """State transitions over one engine. Owners are process ids; leases are in seconds."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- runs ---------------------------------------------------------------------------------

    async def accept_run(
        self, key: str, run: RunInput, *, owner: str | None, lease_seconds: float
    ) -> tuple[WorkflowRow, bool]:
        """Insert the workflow, leased to `owner` (who executes it now) or left for any worker.

        Returns the row and whether it was created. Raises InputMismatch when the key exists
        with another input.
        """
        if owner is not None:
            values = "'running', 1, :owner, now() + make_interval(secs => :lease), now()"
        else:
            values = "'pending', 0, NULL, NULL, NULL"
        insert = text(f"""
            INSERT INTO workflow
                (key, query, model, instructions, status, attempts, lease_owner,
                 lease_expires_at, started_at)
            VALUES (:key, :query, :model, :instructions, {values})
            ON CONFLICT (key) DO NOTHING
            RETURNING {WORKFLOW_COLUMNS}
        """)
        params = {
            "key": key,
            "query": run.query,
            "model": run.model,
            "instructions": run.instructions,
            "owner": owner,
            "lease": lease_seconds,
        }
        async with self._engine.begin() as connection:
            row = (await connection.execute(insert, params)).one_or_none()
            if row is not None:
                if owner is None:
                    await _notify(connection, WORK_CHANNEL, "run")
                return _workflow(row), True
            existing = (
                await connection.execute(
                    text(f"SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE key = :key"),
                    {"key": key},
                )
            ).one()
        workflow = _workflow(existing)
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
        async with self._engine.begin() as connection:
            rows = await connection.execute(
                statement, {"owner": owner, "lease": lease_seconds, "limit": limit}
            )
            return [_workflow(row) for row in rows]

    async def retry_run_later(
        self, key: str, *, owner: str, error: str, delay_seconds: float
    ) -> bool:
        """Give the run back, due again after the delay, with the last error recorded."""
        statement = text("""
            UPDATE workflow
            SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, error = :error,
                next_attempt_at = now() + make_interval(secs => :delay), updated_at = now()
            WHERE key = :key AND lease_owner = :owner AND status = 'running'
        """)
        async with self._engine.begin() as connection:
            result = await connection.execute(
                statement, {"key": key, "owner": owner, "error": error, "delay": delay_seconds}
            )
            return result.rowcount == 1

    async def complete_run(
        self,
        key: str,
        *,
        owner: str,
        output: str | None,
        error: str | None,
        deliver_to: str,
        delivery_slots: int,
        lease_seconds: float,
        notify_on_failure: bool,
    ) -> tuple[WorkflowRow, list[Delivery]] | None:
        """Finish a leased run: record it, complete its promise, make its subscribers ready.

        `output` for success, `error` for a terminal failure. Up to `delivery_slots` of the
        subscriptions made ready are leased to `deliver_to` (the caller's delivery worker) and
        returned; the rest are left for any worker.
        Returns None when `owner` no longer holds the lease (another process took the run over).
        """
        try:
            return await self._complete_run(
                key,
                owner=owner,
                output=output,
                error=error,
                deliver_to=deliver_to,
                delivery_slots=delivery_slots,
                lease_seconds=lease_seconds,
                notify_on_failure=notify_on_failure,
            )
        except _LeaseLost:
            return None

    async def _complete_run(
        self,
        key: str,
        *,
        owner: str,
        output: str | None,
        error: str | None,
        deliver_to: str,
        delivery_slots: int,
        lease_seconds: float,
        notify_on_failure: bool,
    ) -> tuple[WorkflowRow, list[Delivery]]:
        succeeded = error is None
        async with self._engine.begin() as connection:
            await connection.execute(
                text("""
                    INSERT INTO promise (workflow_key, name, state, value, error, completed_at)
                    VALUES (:key, :name, :state, CAST(:value AS jsonb), :error, now())
                    ON CONFLICT (workflow_key, name) DO UPDATE
                    SET state = excluded.state, value = excluded.value, error = excluded.error,
                        completed_at = excluded.completed_at
                    WHERE promise.state = 'pending'
                """),
                {
                    "key": key,
                    "name": AGENT_PROMISE,
                    "state": "resolved" if succeeded else "rejected",
                    "value": json.dumps(output) if succeeded else None,
                    "error": error,
                },
            )
            row = (
                await connection.execute(
                    text(f"""
                        UPDATE workflow
                        SET status = :status, output = :output, error = :error,
                            lease_owner = NULL, lease_expires_at = NULL,
                            finished_at = now(), updated_at = now()
                        WHERE key = :key AND lease_owner = :owner AND status = 'running'
                        RETURNING {WORKFLOW_COLUMNS}
                    """),
                    {
                        "key": key,
                        "owner": owner,
                        "status": "succeeded" if succeeded else "failed",
                        "output": output,
                        "error": error,
                    },
                )
            ).one_or_none()
            if row is None:
                raise _LeaseLost(key)
            deliveries = await self._release_waiting(
                connection,
                key,
                AGENT_PROMISE,
                deliver_to=deliver_to,
                delivery_slots=delivery_slots,
                lease_seconds=lease_seconds,
                notify_on_failure=notify_on_failure,
            )
            await _notify(connection, KEY_CHANNEL, key)
            return _workflow(row), deliveries

    async def _release_waiting(
        self,
        connection: AsyncConnection,
        key: str,
        promise_name: str,
        *,
        deliver_to: str,
        delivery_slots: int,
        lease_seconds: float,
        notify_on_failure: bool,
    ) -> list[Delivery]:
        """Turn the promise's waiting subscriptions ready (the caller holds the promise lock)."""
        promise = (
            await connection.execute(
                text(
                    f"SELECT {PROMISE_COLUMNS} FROM promise "
                    "WHERE workflow_key = :key AND name = :name"
                ),
                {"key": key, "name": promise_name},
            )
        ).one()
        if promise.state == "rejected" and not notify_on_failure:
            await connection.execute(
                text("""
                    UPDATE subscription
                    SET status = 'failed', updated_at = now(),
                        last_error = 'not notified: the task failed and NOTIFY_ON_FAILURE is off'
                    WHERE workflow_key = :key AND promise_name = :name AND status = 'waiting'
                """),
                {"key": key, "name": promise_name},
            )
            return []
        # The first `slots` of them are leased to the caller, who sends them right after the
        # commit; the rest are left to whichever worker claims them first.
        rows = await connection.execute(
            text("""
                UPDATE subscription AS s
                SET status = 'ready', ready_at = now(), next_attempt_at = now(), updated_at = now(),
                    lease_owner = CASE WHEN waiting.rank <= :slots THEN CAST(:owner AS text) END,
                    lease_expires_at = CASE WHEN waiting.rank <= :slots
                                            THEN now() + make_interval(secs => :lease) END,
                    attempts = s.attempts + CASE WHEN waiting.rank <= :slots THEN 1 ELSE 0 END
                FROM (
                    SELECT id, row_number() OVER (ORDER BY created_at, id) AS rank
                    FROM subscription
                    WHERE workflow_key = :key AND promise_name = :name AND status = 'waiting'
                ) AS waiting
                WHERE s.id = waiting.id AND s.status = 'waiting'
                RETURNING s.id, s.workflow_key, s.email, s.message_id, s.attempts, s.lease_owner
            """),
            {
                "key": key,
                "name": promise_name,
                "owner": deliver_to,
                "slots": delivery_slots,
                "lease": lease_seconds,
            },
        )
        deliveries, left_for_anyone = [], 0
        for row in rows:
            if row.lease_owner is None:
                left_for_anyone += 1
            else:
                deliveries.append(_delivery(row, promise))
        if left_for_anyone:
            await _notify(connection, WORK_CHANNEL, "delivery")
        return deliveries

    # -- subscriptions ------------------------------------------------------------------------

    async def subscribe(
        self,
        key: str,
        email: str,
        *,
        promise_name: str = AGENT_PROMISE,
        message_id: str,
        subscription_id: uuid.UUID,
        deliver_to: str | None,
        lease_seconds: float,
        notify_on_failure: bool,
    ) -> Subscribed:
        """Register `email` for the promise (created pending if absent); idempotent per email.

        Holding the promise row FOR SHARE while inserting means a concurrent completion either
        sees this subscription (and readies it) or is seen by it (and it is inserted ready).
        """
        async with self._engine.begin() as connection:
            await connection.execute(
                text("""
                    INSERT INTO promise (workflow_key, name, state) VALUES (:key, :name, 'pending')
                    ON CONFLICT (workflow_key, name) DO NOTHING
                """),
                {"key": key, "name": promise_name},
            )
            promise = (
                await connection.execute(
                    text(
                        f"SELECT {PROMISE_COLUMNS} FROM promise "
                        "WHERE workflow_key = :key AND name = :name FOR SHARE"
                    ),
                    {"key": key, "name": promise_name},
                )
            ).one()
            if promise.state == "pending":
                status, lease = "'waiting', 0, NULL, NULL, NULL", None
            elif promise.state == "rejected" and not notify_on_failure:
                status, lease = "'failed', 0, NULL, NULL, NULL", None
            elif deliver_to is not None:
                status = "'ready', 1, :owner, now() + make_interval(secs => :lease), now()"
                lease = deliver_to
            else:
                status, lease = "'ready', 0, NULL, NULL, now()", None
            row = (
                await connection.execute(
                    text(f"""
                        INSERT INTO subscription
                            (id, workflow_key, promise_name, email, message_id, status, attempts,
                             lease_owner, lease_expires_at, ready_at, last_error)
                        VALUES (:id, :key, :name, :email, :message_id, {status},
                                CASE WHEN :failed THEN :failure END)
                        ON CONFLICT (workflow_key, promise_name, email) DO NOTHING
                        RETURNING {SUBSCRIPTION_COLUMNS}
                    """),
                    {
                        "id": subscription_id,
                        "key": key,
                        "name": promise_name,
                        "email": email,
                        "message_id": message_id,
                        "owner": lease,
                        "lease": lease_seconds,
                        "failed": promise.state == "rejected" and not notify_on_failure,
                        "failure": "not notified: the task failed and NOTIFY_ON_FAILURE is off",
                    },
                )
            ).one_or_none()
            if row is None:
                existing = (
                    await connection.execute(
                        text(f"""
                            SELECT {SUBSCRIPTION_COLUMNS} FROM subscription
                            WHERE workflow_key = :key AND promise_name = :name AND email = :email
                        """),
                        {"key": key, "name": promise_name, "email": email},
                    )
                ).one()
                return Subscribed(_subscription(existing), created=False, delivery=None)
            subscription = _subscription(row)
            if subscription.status == "ready" and lease is None:
                await _notify(connection, WORK_CHANNEL, "delivery")
        delivery = None
        if subscription.status == "ready" and lease is not None:
            delivery = _delivery(row, promise)
        return Subscribed(subscription, created=True, delivery=delivery)

    async def claim_deliveries(
        self, *, owner: str, lease_seconds: float, limit: int
    ) -> list[Delivery]:
        """Lease ready subscriptions that nobody holds (or whose holder died) and are due."""
        statement = text("""
            WITH claimable AS (
                SELECT id FROM subscription
                WHERE status = 'ready' AND next_attempt_at <= now()
                  AND (lease_expires_at IS NULL OR lease_expires_at < now())
                ORDER BY next_attempt_at
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            )
            UPDATE subscription AS s
            SET lease_owner = :owner, lease_expires_at = now() + make_interval(secs => :lease),
                attempts = s.attempts + 1, updated_at = now()
            FROM claimable, promise AS p
            WHERE s.id = claimable.id
              AND p.workflow_key = s.workflow_key AND p.name = s.promise_name
            RETURNING s.id, s.workflow_key, s.email, s.message_id, s.attempts,
                      p.state, p.value::text AS value_json, p.error
        """)
        async with self._engine.begin() as connection:
            rows = await connection.execute(
                statement, {"owner": owner, "lease": lease_seconds, "limit": limit}
            )
            return [_delivery(row, row) for row in rows]

    async def mark_sent(self, subscription_id: uuid.UUID, *, owner: str) -> float | None:
        """Record the SMTP server's acceptance; returns seconds since the subscription became
        ready, or None if the lease was lost meanwhile (another process owns it now)."""
        return await self._finish_delivery(
            subscription_id,
            owner=owner,
            assignments="status = 'sent', sent_at = now(), last_error = NULL",
            params={},
        )

    async def fail_delivery(
        self, subscription_id: uuid.UUID, *, owner: str, error: str
    ) -> float | None:
        """Give up on this subscription, with the reason recorded (None if the lease was lost)."""
        return await self._finish_delivery(
            subscription_id,
            owner=owner,
            assignments="status = 'failed', last_error = :error",
            params={"error": error},
        )

    async def _finish_delivery(
        self,
        subscription_id: uuid.UUID,
        *,
        owner: str,
        assignments: str,
        params: dict[str, object],
    ) -> float | None:
        statement = text(f"""
            UPDATE subscription
            SET {assignments}, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
            WHERE id = :id AND lease_owner = :owner AND status = 'ready'
            RETURNING workflow_key,
                      extract(epoch FROM now() - coalesce(ready_at, created_at))::float AS waited
        """)
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(
                    statement, {"id": subscription_id, "owner": owner, **params}
                )
            ).one_or_none()
            if row is None:
                return None
            # Wakes whoever waits on this delivery (sync on_notify, status streams) on any replica.
            await _notify(connection, KEY_CHANNEL, f"{row.workflow_key} {subscription_id}")
            waited: float = row.waited
            return waited

    async def retry_delivery_later(
        self, subscription_id: uuid.UUID, *, owner: str, error: str, delay_seconds: float
    ) -> bool:
        """Give the delivery back, due again after the delay, with the last error recorded."""
        statement = text("""
            UPDATE subscription
            SET lease_owner = NULL, lease_expires_at = NULL, last_error = :error,
                next_attempt_at = now() + make_interval(secs => :delay), updated_at = now()
            WHERE id = :id AND lease_owner = :owner AND status = 'ready'
        """)
        async with self._engine.begin() as connection:
            result = await connection.execute(
                statement,
                {"id": subscription_id, "owner": owner, "error": error, "delay": delay_seconds},
            )
            return result.rowcount == 1

    async def expire_subscriptions(self, *, ttl_seconds: float, limit: int = 1000) -> int:
        """Expire subscriptions that have waited longer than the TTL; returns how many."""
        async with self._engine.begin() as connection:
            rows = (
                await connection.execute(
                    text("""
                        UPDATE subscription
                        SET status = 'expired', updated_at = now(),
                            last_error = 'expired: no result after waiting '
                                         || make_interval(secs => :ttl)::text
                        WHERE id IN (
                            SELECT id FROM subscription
                            WHERE status = 'waiting'
                              AND created_at < now() - make_interval(secs => :ttl)
                            ORDER BY created_at
                            LIMIT :limit
                            FOR UPDATE SKIP LOCKED
                        )
                        RETURNING workflow_key, id
                    """),
                    {"ttl": ttl_seconds, "limit": limit},
                )
            ).all()
            for row in rows:
                await _notify(connection, KEY_CHANNEL, f"{row.workflow_key} {row.id}")
            return len(rows)

    # -- leases -------------------------------------------------------------------------------

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
            await _notify(connection, WORK_CHANNEL, "released")

    # -- reads ---------------------------------------------------------------------------------

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
        async with self._engine.connect() as connection:
            for family, status, n in await connection.execute(statement):
                getattr(counts, family)[status] = n
        return counts

    async def get_workflow(self, key: str) -> WorkflowRow | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    text(f"SELECT {WORKFLOW_COLUMNS} FROM workflow WHERE key = :key"),
                    {"key": key},
                )
            ).one_or_none()
            return None if row is None else _workflow(row)

    async def get_subscription(self, subscription_id: uuid.UUID) -> SubscriptionRow | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    text(f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscription WHERE id = :id"),
                    {"id": subscription_id},
                )
            ).one_or_none()
            return None if row is None else _subscription(row)

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
            promise = (
                await connection.execute(
                    text(
                        f"SELECT {PROMISE_COLUMNS} FROM promise "
                        "WHERE workflow_key = :key AND name = :name"
                    ),
                    {"key": key, "name": AGENT_PROMISE},
                )
            ).one_or_none()
            subscriptions = await connection.execute(
                text(f"""
                    SELECT {SUBSCRIPTION_COLUMNS} FROM subscription
                    WHERE workflow_key = :key ORDER BY created_at, id
                """),
                {"key": key},
            )
            return WorkflowStatus(
                key=key,
                workflow=None if workflow is None else _workflow(workflow),
                promise=None if promise is None else _promise(promise),
                subscriptions=[_subscription(row) for row in subscriptions],
            )


RENEW_LEASES = """
    WITH runs AS (
        UPDATE workflow SET lease_expires_at = now() + make_interval(secs => $2)
        WHERE key = ANY($3::text[]) AND lease_owner = $1 AND status = 'running'
        RETURNING 1
    ), deliveries AS (
        UPDATE subscription SET lease_expires_at = now() + make_interval(secs => $2)
        WHERE id = ANY($4::uuid[]) AND lease_owner = $1 AND status = 'ready'
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
) -> tuple[int, int]:
    """Extend the leases of the runs and deliveries this process is working on, in one
    statement; returns how many of each were renewed. (A row the process holds but no longer
    works on is not renewed: its lease lapses and someone else takes it.)

    It runs on the process's LISTEN connection, not the query pool: a pool saturated by a burst
    of requests must never delay renewals until leases lapse and others take the work over.
    """
    row = await connection.fetchrow(
        RENEW_LEASES, owner, float(lease_seconds), run_keys, subscription_ids
    )
    assert row is not None
    return row["runs"], row["deliveries"]
