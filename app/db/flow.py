"""Model flow control in the database: slots of a model bucket taken, renewed and given back
through agent_notify_model_slot_v1 (migration 0014), and the pauses providers ask for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.db.gateway import Database
from app.db.scope import FLOW_CHANNEL, Scope
from app.db.wakeups import Wakeups


@dataclass(frozen=True, slots=True)
class BucketLimits:
    """What one AGENT_MODEL_LIMITS entry allows across every replica (None: no limit)."""

    concurrency: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class SlotAnswer:
    granted: bool
    # When the bucket's one-minute window has room again, if it is full now.
    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class Ticket:
    """One model call's place in a bucket: waiting for a slot, then holding it."""

    id: uuid.UUID
    bucket: str
    workflow_key: str
    priority: int


class ModelSlots:
    def __init__(self, database: Database, scope: Scope, wakeups: Wakeups) -> None:
        # Slots are given back on the lane that always has a connection: a slot must not wait
        # behind the requests of waiters who want it.
        self._db = database
        self._urgent = database.urgent
        self._wakeups = wakeups
        self._bound = scope.params()

    async def take(
        self,
        ticket: Ticket,
        limits: BucketLimits,
        *,
        wait_seconds: float,
        hold_seconds: float,
    ) -> SlotAnswer:
        """Join the bucket's waiters (or renew the place, for `wait_seconds` more), and hold a
        slot if one is free and no better waiter wants it; a slot held lasts `hold_seconds`."""
        row = await self._db.fetchrow(
            "model_slot",
            **self._arguments(ticket, limits, release=False, tokens=0),
            wait_seconds=wait_seconds,
            hold_seconds=hold_seconds,
        )
        assert row is not None  # the function returns one row
        return SlotAnswer(granted=row["granted"], retry_at=row["retry_at"])

    async def give_back(
        self, ticket: Ticket, limits: BucketLimits, *, tokens: int, hold_seconds: float
    ) -> None:
        """Leave the bucket (the slot, or the place among its waiters), counting the call's
        tokens in the current window; the freed slot goes to the best waiter."""
        await self._urgent.fetchrow(
            "model_slot",
            **self._arguments(ticket, limits, release=True, tokens=tokens),
            wait_seconds=0.0,
            hold_seconds=hold_seconds,
        )

    async def pause(self, model: str, seconds: float) -> None:
        """Pause `model` for every replica for `seconds` (a longer pause already set stays)."""
        row = await self._db.fetchrow("pause_model", model=model, seconds=seconds, **self._bound)
        assert row is not None  # inserted or updated
        self._wakeups.post(FLOW_CHANNEL, f"pause {row['seconds']} {model}")

    async def pauses(self) -> dict[str, float]:
        """The models paused now, with the seconds each has left."""
        rows = await self._db.fetch("model_pauses")
        return {row["model"]: row["seconds"] for row in rows}

    def _arguments(
        self, ticket: Ticket, limits: BucketLimits, *, release: bool, tokens: int
    ) -> dict[str, object]:
        return {
            "bucket": ticket.bucket,
            "ticket": ticket.id,
            "release": release,
            "tokens": tokens,
            "workflow_key": ticket.workflow_key,
            "priority": ticket.priority,
            "concurrency": limits.concurrency,
            "requests_per_minute": limits.requests_per_minute,
            "tokens_per_minute": limits.tokens_per_minute,
            **self._bound,
        }
