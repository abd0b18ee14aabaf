"""Subscriptions: registering, readying, claiming, sending and expiring them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.durable.store.rows import (
    AGENT_PROMISE,
    KEY_CHANNEL,
    WORK_CHANNEL,
    Delivery,
    Queries,
    Subscribed,
    TooManySubscriptions,
    delivery_of,
    leased_delivery,
    notify,
    select_promise,
    subscription_of,
)


async def release_waiting(
    connection: AsyncConnection,
    key: str,
    promise_name: str,
    *,
    deliver_to: str,
    reserve: Callable[[int], int],
    lease_seconds: float,
    notify_on_failure: bool,
    promise: Row[Any] | None = None,
) -> list[Delivery]:
    """Turn the promise's waiting subscriptions ready (the caller holds the promise lock).

    `reserve(n)` is asked for room for the n readied ones in the caller's delivery worker; as
    many as it grants are leased to `deliver_to` and returned, for the caller to send right
    after the commit. The rest are left to whichever worker claims them first.
    `promise` is the completed promise's row (PROMISE_COLUMNS) when the caller has it.
    """
    if promise is None:
        promise = await select_promise(connection, key, promise_name)
        assert promise is not None  # the caller holds its lock
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
    # One statement readies them all and leases them all to the caller, the common case (its
    # delivery worker has room); what reserve() then refuses is handed back below.
    readied = (
        await connection.execute(
            text("""
                UPDATE subscription
                SET status = 'ready', ready_at = now(), next_attempt_at = now(),
                    updated_at = now(), lease_owner = :owner, attempts = attempts + 1,
                    lease_expires_at = now() + make_interval(secs => :lease)
                WHERE workflow_key = :key AND promise_name = :name AND status = 'waiting'
                RETURNING id, workflow_key, email, message_id, attempts, created_at
            """),
            {"key": key, "name": promise_name, "owner": deliver_to, "lease": lease_seconds},
        )
    ).all()
    if not readied:
        return []
    # Oldest subscribers first; the reservation is exactly what this run needs, no more.
    readied = sorted(readied, key=lambda row: (row.created_at, row.id))
    slots = reserve(len(readied))
    if slots < len(readied):
        await connection.execute(
            text("""
                UPDATE subscription
                SET lease_owner = NULL, lease_expires_at = NULL, attempts = attempts - 1
                WHERE id = ANY(:ids)
            """),
            {"ids": [row.id for row in readied[slots:]]},
        )
        await notify(connection, WORK_CHANNEL, "delivery")
    return [delivery_of(row, promise) for row in readied[:slots]]


async def announce_completion(
    connection: AsyncConnection,
    key: str,
    promise_name: str,
    *,
    deliver_to: str,
    reserve: Callable[[int], int],
    lease_seconds: float,
    notify_on_failure: bool,
    promise: Row[Any] | None = None,
) -> list[Delivery]:
    """After a promise completed in this transaction: ready its subscribers (release_waiting)
    and NOTIFY the key, so waiters on every replica re-read."""
    deliveries = await release_waiting(
        connection,
        key,
        promise_name,
        deliver_to=deliver_to,
        reserve=reserve,
        lease_seconds=lease_seconds,
        notify_on_failure=notify_on_failure,
        promise=promise,
    )
    await notify(connection, KEY_CHANNEL, key)
    return deliveries


# Run on the driver (Queries._driver), as every subscription takes it.
SUBSCRIBE = """
    SELECT * FROM agent_notify_subscribe($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""


MARK_SENT_MANY = f"""
    UPDATE subscription
    SET status = 'sent', sent_at = now(), last_error = NULL, lease_owner = NULL,
        lease_expires_at = NULL, updated_at = now()
    WHERE id = ANY($1::uuid[]) AND lease_owner = $2 AND status = 'ready'
    RETURNING id,
              extract(epoch FROM now() - coalesce(ready_at, created_at))::float AS waited,
              -- wakes whoever waits on this delivery (sync on_notify, event streams)
              pg_notify('{KEY_CHANNEL}', workflow_key || ' ' || id::text)
"""


class Subscriptions(Queries):
    async def subscribe(
        self,
        key: str,
        email: str,
        *,
        promise_name: str = AGENT_PROMISE,
        message_id: str,
        subscription_id: uuid.UUID,
        deliver_to: str,
        reserve: Callable[[int], int],
        lease_seconds: float,
        notify_on_failure: bool,
        max_per_workflow: int,
    ) -> Subscribed:
        """Register `email` for the promise (created pending if absent); idempotent per email.

        Holding the promise row FOR SHARE while inserting means a concurrent completion either
        sees this subscription (and readies it) or is seen by it (and it is inserted ready).
        A subscription made ready here is leased to `deliver_to` if reserve(1) grants room.
        Raises TooManySubscriptions when the workflow has `max_per_workflow` already.

        One statement: agent_notify_subscribe() (migration 0005) runs the transaction that this
        did in five round trips, in the same lock order.
        """
        room = reserve(1)
        async with self._driver() as connection:
            row = await connection.fetchrow(
                SUBSCRIBE,
                key,
                promise_name,
                email,
                subscription_id,
                message_id,
                deliver_to,
                room,
                lease_seconds,
                notify_on_failure,
                max_per_workflow,
                WORK_CHANNEL,
            )
        if row is None:
            raise TooManySubscriptions(key)
        delivery = None
        if row["leased"]:
            delivery = leased_delivery(
                row["id"],
                row["attempts"],
                email=row["email"],
                message_id=row["message_id"],
                workflow_key=row["workflow_key"],
                promise_state=row["promise_state"],
                promise_value_json=row["promise_value_json"],
                promise_error=row["promise_error"],
            )
        return Subscribed(subscription_of(row), created=row["created"], delivery=delivery)

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
        async with self._single.connect() as connection:
            rows = await connection.execute(
                statement, {"owner": owner, "lease": lease_seconds, "limit": limit}
            )
            return [delivery_of(row, row) for row in rows]

    async def mark_sent(self, subscription_id: uuid.UUID, *, owner: str) -> float | None:
        """Record the SMTP server's acceptance; returns seconds since the subscription became
        ready, or None if the lease was lost meanwhile (another process owns it now)."""
        return await self._finish_delivery(
            subscription_id,
            owner=owner,
            assignments="status = 'sent', sent_at = now(), last_error = NULL",
            params={},
        )

    async def mark_sent_many(
        self, subscription_ids: Sequence[uuid.UUID], *, owner: str
    ) -> dict[uuid.UUID, float]:
        """mark_sent for many subscriptions in one statement: seconds since each became ready,
        for those whose lease `owner` still held."""
        async with self._driver() as connection:
            rows = await connection.fetch(MARK_SENT_MANY, list(subscription_ids), owner)
            return {row["id"]: row["waited"] for row in rows}

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
            RETURNING extract(epoch FROM now() - coalesce(ready_at, created_at))::float AS waited,
                      -- wakes whoever waits on this delivery (sync on_notify, event streams)
                      pg_notify('{KEY_CHANNEL}', workflow_key || ' ' || id::text)
        """)
        async with self._single.connect() as connection:
            row = (
                await connection.execute(
                    statement, {"id": subscription_id, "owner": owner, **params}
                )
            ).one_or_none()
            if row is None:
                return None
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
        async with self._single.connect() as connection:
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
                await notify(connection, KEY_CHANNEL, f"{row.workflow_key} {row.id}")
            return len(rows)
