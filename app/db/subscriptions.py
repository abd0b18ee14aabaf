"""Subscriptions: registering, claiming, recording deliveries and expiring them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from app.db.gateway import Database, Record
from app.db.rows import Delivery, PromiseRow, Subscribed, SubscriptionRow
from app.db.scope import Scope
from app.db.wakeups import Wakeups
from app.states import AGENT_PROMISE, Channel, SubscriptionState


class TooManySubscriptions(Exception):
    """The workflow has as many subscriptions as one may have."""


class Subscriptions:
    def __init__(self, database: Database, scope: Scope, wakeups: Wakeups) -> None:
        self._db = database
        self._wakeups = wakeups
        self._bound = scope.params()

    async def subscribe(
        self,
        key: str,
        email: str,
        *,
        promise_name: str = AGENT_PROMISE,
        subscription_id: uuid.UUID,
        message_id: str,
        room: int,
    ) -> Subscribed:
        """Register `email` for the promise (created pending if absent); idempotent per
        address. Holding the promise row FOR SHARE while inserting, so a concurrent completion
        either sees this subscription or is seen by it. A subscription made ready here is
        leased to this process when `room` > 0. TooManySubscriptions at the workflow's cap."""
        row = await self._db.fetchrow(
            "subscribe",
            key=key,
            promise=promise_name,
            channel=str(Channel.EMAIL),
            email=email,
            target=None,
            secret=None,
            id=subscription_id,
            message_id=message_id,
            room=room,
            **self._bound,
        )
        return self._subscribed(key, row)

    async def subscribe_channel(
        self,
        key: str,
        channel: Channel,
        target: str,
        *,
        secret: str | None,
        promise_name: str = AGENT_PROMISE,
        subscription_id: uuid.UUID,
        message_id: str,
        room: int,
    ) -> Subscribed:
        """As `subscribe`, for a webhook or Apprise `target`: idempotent per target (the first
        subscription's secret stays)."""
        row = await self._db.fetchrow(
            "subscribe",
            key=key,
            promise=promise_name,
            channel=str(channel),
            email=None,
            target=target,
            secret=secret,
            id=subscription_id,
            message_id=message_id,
            room=room,
            **self._bound,
        )
        return self._subscribed(key, row)

    def _subscribed(self, key: str, row: Record | None) -> Subscribed:
        if row is None:
            raise TooManySubscriptions(key)
        subscription = SubscriptionRow.of(row["subscription_row"])
        delivery = None
        if row["leased"]:
            delivery = Delivery(subscription, PromiseRow.of(row["promise_row"]))
        elif subscription.status == SubscriptionState.READY:
            self._wakeups.work("delivery")  # its promise is complete: any worker may send it
        return Subscribed(subscription, created=row["created"], delivery=delivery)

    async def get(self, subscription_id: uuid.UUID) -> SubscriptionRow | None:
        row = await self._db.fetchrow("select_subscription", id=subscription_id)
        return None if row is None else SubscriptionRow.of(row["subscription_row"])

    async def cancel(
        self, subscription_id: uuid.UUID, *, reason: str
    ) -> tuple[SubscriptionRow, bool] | None:
        """Cancel a subscription not yet sent, with the reason; the row after and whether this
        cancelled it (False: it had already finished, any way). None if it no longer exists."""
        row = await self._db.fetchrow(
            "cancel_subscription", id=subscription_id, reason=reason, **self._bound
        )
        if row is None:
            return None
        subscription = SubscriptionRow.of(row["subscription_row"])
        if row["changed"]:
            self._wakeups.key(subscription.workflow_key, str(subscription.id))
        return subscription, bool(row["changed"])

    async def claim(self, *, limit: int) -> list[Delivery]:
        """Lease ready subscriptions that nobody holds (or whose holder died) and are due."""
        rows = await self._db.fetch("claim_deliveries", limit=limit, **self._bound)
        return [
            Delivery(SubscriptionRow.of(row["subscription_row"]), PromiseRow.of(row["promise_row"]))
            for row in rows
        ]

    async def mark_sent(self, subscription_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, float]:
        """Record notifications as sent: for those whose lease this process still held, the
        seconds since each became ready."""
        rows = await self._db.fetch("mark_sent", ids=list(subscription_ids), **self._bound)
        self._wakeups.keys((row["workflow_key"], str(row["id"])) for row in rows)
        return {row["id"]: row["waited"] for row in rows}

    async def fail(self, subscription_id: uuid.UUID, *, error: str) -> bool:
        """Give up on a subscription, with the reason; False if the lease was lost."""
        row = await self._db.fetchrow(
            "fail_delivery", id=subscription_id, error=error, **self._bound
        )
        if row is None:
            return False
        self._wakeups.key(row["workflow_key"], str(subscription_id))
        return True

    async def confirm_lease(self, subscription_id: uuid.UUID, *, attempts: int) -> bool:
        """Renew the delivery's lease if attempt `attempts` of this process holds it still."""
        changed = await self._db.execute(
            "confirm_delivery_lease", id=subscription_id, attempts=attempts, **self._bound
        )
        return changed == 1

    async def retry_later(
        self,
        subscription_id: uuid.UUID,
        *,
        error: str,
        delay_seconds: float,
        outcome_unknown: bool = False,
    ) -> bool:
        """Give the delivery back, due again after the delay, with the last error recorded (and,
        with `outcome_unknown`, that the attempt's outcome is unknown); False if the lease was
        lost."""
        changed = await self._db.execute(
            "retry_delivery_later",
            id=subscription_id,
            error=error,
            delay_seconds=delay_seconds,
            outcome_unknown=outcome_unknown,
            **self._bound,
        )
        return changed == 1

    async def expire(self, *, ttl_seconds: float, limit: int = 1000) -> int:
        """Expire up to `limit` subscriptions that waited longer than the TTL; how many."""
        rows = await self._db.fetch(
            "expire_subscriptions", ttl_seconds=ttl_seconds, limit=limit, **self._bound
        )
        self._wakeups.keys((row["workflow_key"], str(row["id"])) for row in rows)
        return len(rows)
