"""Typed rows: what the data gateway's statements return, as frozen dataclasses.

A table's row reaches Python as the JSON object `to_jsonb(row)` makes (queries.sql): a row is
built from it by field name, timestamps and ids parsed back from their JSON text. Keys beyond
the dataclass's fields are ignored, so a column a later migration adds never breaks a reader
that does not know it.
"""

from __future__ import annotations

import functools
import json
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Protocol, Self

from app.states import (
    FINISHED_SUBSCRIPTION_STATES,
    FINISHED_WORKFLOW_STATES,
    Channel,
    PromiseState,
    SubscriptionState,
    WorkflowState,
)


class _Columns(Protocol):
    """A JSON object, or a row (asyncpg Record): values by column name."""

    def __getitem__(self, name: str, /) -> Any: ...


def _parse_datetime(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _parse_uuid(value: Any) -> Any:
    return uuid.UUID(value) if isinstance(value, str) else value


def _identity(value: Any) -> Any:
    return value


def _parser(annotation: Any) -> Callable[[Any], Any]:
    """How a field of this type is read from JSON (text for timestamps and ids)."""
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    kinds = set(members) or {annotation}
    if datetime in kinds:
        return _parse_datetime
    if uuid.UUID in kinds:
        return _parse_uuid
    return _identity


@functools.cache
def _parsers(cls: type) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _parser(hints[f.name])) for f in fields(cls))


class _FromColumns:
    """`of(row)`: the dataclass from a JSON object (or a row's mapping) of the same names."""

    @classmethod
    def of(cls, source: _Columns) -> Self:
        parsers = _parsers(typing.cast(type, cls))
        return cls(**{name: parse(source[name]) for name, parse in parsers})


@dataclass(frozen=True, slots=True)
class Approver:
    """Who a run asks for its approvals: an email address, or a webhook or Apprise target
    (with a webhook's secret)."""

    channel: Channel
    address: str
    secret: str | None = None

    def to_json(self) -> dict[str, str | None]:
        if self.channel is Channel.EMAIL:
            return {"channel": str(self.channel), "email": self.address}
        return {"channel": str(self.channel), "target": self.address, "secret": self.secret}

    @classmethod
    def from_json(cls, value: Any) -> Approver:
        channel = Channel(value["channel"])
        address = value["email"] if channel is Channel.EMAIL else value["target"]
        return cls(channel, address, value.get("secret"))


@dataclass(frozen=True, slots=True)
class RunInput:
    """What a run is asked: two calls with the same key and input are the same run."""

    query: str
    model: str | None = None
    instructions: str | None = None
    # The tools it may call, sorted (None: every configured one); its model turns (None:
    # AGENT_MAX_STEPS).
    tools: tuple[str, ...] | None = None
    max_steps: int | None = None
    # The final answer's JSON Schema, as JSON text (None: a plain-text answer); the same
    # schema in another key order is the same input.
    output_schema: str | None = None
    # Who is asked when it calls request_approval (None: nobody, no such tool), and how long
    # they have (None: APPROVAL_TIMEOUT_SECONDS).
    approvers: tuple[Approver, ...] | None = None
    approval_timeout_seconds: float | None = None
    # Scheduling, not what is asked: a call with another priority attaches to the same run.
    priority: int = field(default=0, compare=False)

    @property
    def schema(self) -> dict[str, Any] | None:
        return _schema(self.output_schema)

    def matches(self, other: RunInput) -> bool:
        """Whether the two are the same input (a schema compared as JSON)."""
        return replace(self, output_schema=None) == replace(other, output_schema=None) and (
            _canonical_schema(self.output_schema) == _canonical_schema(other.output_schema)
        )


def _schema(text: str | None) -> dict[str, Any] | None:
    parsed: dict[str, Any] | None = None if text is None else json.loads(text)
    return parsed


def _canonical_schema(text: str | None) -> str | None:
    return None if text is None else canonical_json(json.loads(text))


def canonical_json(value: object) -> str:
    """JSON text that is the same for the same JSON, whatever the key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class WorkflowRow(_FromColumns):
    key: str
    query: str
    model: str | None
    instructions: str | None
    status: WorkflowState
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
    tools: list[str] | None = None
    max_steps: int | None = None
    priority: int = 0
    output_schema: str | None = None  # JSON text; None: the answer is text
    approvers: list[Any] | None = None  # Approver.to_json() of each
    approval_timeout_seconds: float | None = None
    created_by: str | None = None  # the name of the API token that created it
    # The W3C traceparent of the request that started it (None: tracing was off).
    traceparent: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", WorkflowState(self.status))

    @property
    def input(self) -> RunInput:
        tools = None if self.tools is None else tuple(self.tools)
        return RunInput(
            self.query,
            self.model,
            self.instructions,
            tools,
            self.max_steps,
            self.output_schema,
            self.run_approvers,
            self.approval_timeout_seconds,
            priority=self.priority,
        )

    @property
    def run_approvers(self) -> tuple[Approver, ...] | None:
        if self.approvers is None:
            return None
        return tuple(Approver.from_json(value) for value in self.approvers)

    @property
    def schema(self) -> dict[str, Any] | None:
        """The output schema, parsed (its properties in the client's order)."""
        return _schema(self.output_schema)

    @property
    def output_value(self) -> Any:
        """The answer as the API shows it: the JSON value of a run with an output_schema, the
        text of any other."""
        if self.output_schema is None or self.output is None:
            return self.output
        return json.loads(self.output)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_WORKFLOW_STATES


@dataclass(frozen=True, slots=True)
class Usage(_FromColumns):
    """Tokens and cost summed over a run's steps (cost None when no model's price is known)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class PromiseRow(_FromColumns):
    workflow_key: str
    name: str
    state: PromiseState
    value: Any
    error: str | None
    created_at: datetime
    completed_at: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", PromiseState(self.state))


@dataclass(frozen=True, slots=True)
class SubscriptionRow(_FromColumns):
    id: uuid.UUID
    workflow_key: str
    promise_name: str
    email: str | None  # the address of an email subscriber; None on other channels
    channel: Channel
    target: str | None  # the URL of a webhook or Apprise subscriber
    secret: str | None  # a webhook's signing secret
    status: SubscriptionState
    message_id: str  # the Message-ID, or the webhook-id
    attempts: int
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    sent_at: datetime | None
    # When an attempt's outcome was first unknown (sent, never confirmed); None if never.
    outcome_unknown_at: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", SubscriptionState(self.status))
        object.__setattr__(self, "channel", Channel(self.channel))

    @property
    def address(self) -> str:
        """Who is told: the email address, or the target (which may hold secrets)."""
        return self.email if self.email is not None else self.target or ""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_SUBSCRIPTION_STATES


@dataclass(frozen=True, slots=True)
class Delivery:
    """A ready subscription leased to this process, with its promise's outcome to send."""

    subscription: SubscriptionRow
    promise: PromiseRow

    @property
    def subscription_id(self) -> uuid.UUID:
        return self.subscription.id

    @property
    def attempts(self) -> int:
        return self.subscription.attempts


@dataclass(frozen=True, slots=True)
class Subscribed:
    subscription: SubscriptionRow
    created: bool
    # Set when the promise was already complete: the delivery, leased to this process.
    delivery: Delivery | None


@dataclass(frozen=True, slots=True)
class RunCompletion:
    workflow: WorkflowRow
    # The subscribers released by the completion and leased to this process.
    deliveries: list[Delivery]


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
class KeyOwner:
    """Whom a key belongs to (`name`: an API token's name; None: admins only), if anything of
    it `exists`."""

    exists: bool
    name: str | None


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    key: str
    workflow: WorkflowRow | None
    promise: PromiseRow | None
    subscriptions: list[SubscriptionRow]
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class WorkflowSummary(_FromColumns):
    """One line of the workflow list."""

    key: str
    status: WorkflowState
    query: str
    model: str | None
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    subscribers: int
    notified: int
    # Summed over the run's steps.
    input_tokens: int
    output_tokens: int
    cost_usd: float | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", WorkflowState(self.status))

    @property
    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.cost_usd)


@dataclass(frozen=True, slots=True)
class StateCounts:
    workflow: dict[str, int] = field(default_factory=dict)
    subscription: dict[str, int] = field(default_factory=dict)
    claimable: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IdempotentResponse:
    fingerprint: str
    # None while the first request is still being answered.
    status_code: int | None
    body: bytes | None
    content_type: str | None


def deliveries_of(subscriptions: list[Any], promise: PromiseRow) -> list[Delivery]:
    """Deliveries from the subscription rows a SQL function leased, all of one promise."""
    return [Delivery(SubscriptionRow.of(row), promise) for row in subscriptions]
