"""Row types, column lists and constants shared by the store's modules."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn

from app.db import is_outage
from app.mailer import Notification

AGENT_PROMISE = "agent_response"
# Channel for "this workflow's rows changed" (payload: the key) and for "claimable work exists".
KEY_CHANNEL = "agent_notify"
WORK_CHANNEL = "agent_notify_work"

FINISHED_WORKFLOW_STATES = frozenset({"succeeded", "failed", "cancelled"})
FINISHED_SQL = "('succeeded', 'failed', 'cancelled')"
# The rejection of a cancelled workflow's promise.
CANCELLED = "cancelled"
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
class WorkflowSummary:
    """One line of the workflow list."""

    key: str
    status: str
    query: str
    model: str | None
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    subscribers: int
    notified: int


@dataclass(frozen=True, slots=True)
class PromiseCompletion:
    promise: PromiseRow
    # False when the promise was already complete (first writer wins): nothing changed.
    changed: bool
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class Cancellation:
    workflow: WorkflowRow
    # False when the workflow had already finished: nothing changed.
    cancelled: bool
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    key: str
    workflow: WorkflowRow | None
    promise: PromiseRow | None
    subscriptions: list[SubscriptionRow]


WORKFLOW_FIELDS = tuple(f.name for f in fields(WorkflowRow))
SUBSCRIPTION_FIELDS = tuple(f.name for f in fields(SubscriptionRow))


# What agent_notify_complete_run() raises when the run is no longer the caller's.
LEASE_LOST_SQLSTATE = "AN409"


class LeaseLost(Exception):
    """Raised inside a transaction to roll it back: another process holds the row now."""


class TooManySubscriptions(Exception):
    """The workflow has as many subscriptions as one may have."""


class UnknownWorkflow(Exception):
    """No workflow has this key."""


class InputMismatch(Exception):
    """The key exists with a different input."""

    def __init__(self, existing: WorkflowRow) -> None:
        super().__init__(existing.key)
        self.existing = existing


def workflow_of(row: Row[Any] | Mapping[str, Any]) -> WorkflowRow:
    # Statements may return more (a pg_notify() folded into RETURNING): take the row's fields.
    data = row._mapping if isinstance(row, Row) else row
    return WorkflowRow(**{name: data[name] for name in WORKFLOW_FIELDS})


def subscription_of(row: Row[Any] | Mapping[str, Any]) -> SubscriptionRow:
    data = row._mapping if isinstance(row, Row) else row
    return SubscriptionRow(**{name: data[name] for name in SUBSCRIPTION_FIELDS})


def promise_of(row: Row[Any]) -> PromiseRow:
    data = row._asdict()
    value_json = data.pop("value_json")
    return PromiseRow(**data, value=None if value_json is None else json.loads(value_json))


def delivery_of(subscription: Row[Any], promise: Row[Any]) -> Delivery:
    """A delivery from a subscription row and its promise's state, value_json and error."""
    return leased_delivery(
        subscription.id,
        subscription.attempts,
        email=subscription.email,
        message_id=subscription.message_id,
        workflow_key=subscription.workflow_key,
        promise_state=promise.state,
        promise_value_json=promise.value_json,
        promise_error=promise.error,
    )


def leased_delivery(
    subscription_id: uuid.UUID,
    attempts: int,
    *,
    email: str,
    message_id: str,
    workflow_key: str,
    promise_state: str,
    promise_value_json: str | None,
    promise_error: str | None,
) -> Delivery:
    """A delivery from a subscription's fields and its promise's state, value (JSON) and error."""
    return Delivery(
        subscription_id=subscription_id,
        attempts=attempts,
        notification=Notification(
            email=email,
            message_id=message_id,
            workflow_key=workflow_key,
            resolved=promise_state == "resolved",
            value=None if promise_value_json is None else json.loads(promise_value_json),
            error=promise_error,
        ),
    )


async def lock_promise(
    connection: AsyncConnection, key: str, name: str, *, exclusive: bool
) -> Row[Any]:
    """Create the promise as pending if absent, and lock its row (FOR UPDATE, or FOR SHARE).

    A concurrent delete (retention, DELETE) can remove the row between the insert and the lock;
    then it is created again.
    """
    mode = "UPDATE" if exclusive else "SHARE"
    while True:
        await connection.execute(
            text("""
                INSERT INTO promise (workflow_key, name, state) VALUES (:key, :name, 'pending')
                ON CONFLICT (workflow_key, name) DO NOTHING
            """),
            {"key": key, "name": name},
        )
        row = (
            await connection.execute(
                text(
                    f"SELECT {PROMISE_COLUMNS} FROM promise "
                    f"WHERE workflow_key = :key AND name = :name FOR {mode}"
                ),
                {"key": key, "name": name},
            )
        ).one_or_none()
        if row is not None:
            return row


async def select_promise(connection: AsyncConnection, key: str, name: str) -> Row[Any] | None:
    """The promise's row (PROMISE_COLUMNS), or None."""
    row: Row[Any] | None = (
        await connection.execute(
            text(
                f"SELECT {PROMISE_COLUMNS} FROM promise WHERE workflow_key = :key AND name = :name"
            ),
            {"key": key, "name": name},
        )
    ).one_or_none()
    return row


async def notify(connection: AsyncConnection, channel: str, payload: str) -> None:
    await connection.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )


class Queries:
    """Base of the store's parts: each public method is one short transaction on the engine.

    A method that is one statement runs it on `_single`, in autocommit: the statement is its own
    transaction, and the BEGIN and COMMIT round trips are saved.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.asynccontextmanager
    async def _driver(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the engine's pool, as the asyncpg connection underneath: for the
        statements on every workflow's path, each its own transaction (asyncpg runs a
        statement outside a transaction in autocommit).

        SQLAlchemy's Connection and result around a statement cost about as much CPU as
        asyncpg's own work (0.33 against 0.17 ms per statement here). What SQLAlchemy would do
        on a failure is done here too: a connection that fails other than with an SQL error
        (cancelled, timed out, broken) is closed, not reused; and a disconnect marks every
        connection the pool made before it as stale, as after a Postgres restart, so that one
        statement fails instead of one per pooled connection.
        """
        pool = self._engine.sync_engine.pool
        connection = await greenlet_spawn(pool.connect)
        try:
            yield connection.driver_connection
        except BaseException as exc:
            if is_outage(exc):
                pool._invalidate(connection, exc)  # what Connection does on a disconnect
            elif not isinstance(exc, asyncpg.PostgresError):
                connection.invalidate(exc)
            raise
        finally:
            await greenlet_spawn(connection.close)
