"""The tables, as SQLAlchemy metadata. Alembic migrations create them; this mirrors them
(tests/integration/test_migrations.py compares the two), and its CHECK constraints hold the
states of app/states.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.states import (
    Channel,
    PromiseState,
    StepKind,
    StepState,
    SubscriptionState,
    WorkflowState,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

WORKFLOW_STATES = tuple(WorkflowState)
PROMISE_STATES = tuple(PromiseState)
SUBSCRIPTION_STATES = tuple(SubscriptionState)
CHANNELS = tuple(Channel)
STEP_KINDS = tuple(StepKind)
STEP_STATES = tuple(StepState)

TZ = TIMESTAMP(timezone=True)
NOW = text("now()")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Workflow(Base):
    """One agent task, identified by the client's key; runs at most once to completion."""

    __tablename__ = "workflow"
    __table_args__ = (
        CheckConstraint(_one_of("status", WORKFLOW_STATES), name="status"),
        CheckConstraint("char_length(key) BETWEEN 1 AND 256", name="key_length"),
        CheckConstraint("priority BETWEEN -100 AND 100", name="priority_range"),
        # The runner's claim, by priority and due time (migration 0014 says how).
        Index(
            "ix_workflow_claim_rank",
            text("agent_notify_claim_rank_v1(next_attempt_at, priority)"),
            postgresql_where=text("status IN ('pending', 'running', 'waiting')"),
        ),
        # Work due and unleased, counted for /metrics.
        Index(
            "ix_workflow_claimable",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'running', 'waiting')"),
        ),
        # Listing: newest first by (created_at, key), optionally for one status.
        Index("ix_workflow_created_at_key", "created_at", "key"),
        Index("ix_workflow_status_created_at_key", "status", "created_at", "key"),
        # A user token's list: its own workflows, newest first.
        Index(
            "ix_workflow_created_by_created_at_key",
            "created_by",
            "created_at",
            "key",
            postgresql_where=text("created_by IS NOT NULL"),
        ),
        # The retention janitor's scan of finished workflows.
        Index(
            "ix_workflow_finished_at",
            "finished_at",
            postgresql_where=text("status IN ('succeeded', 'failed', 'cancelled')"),
        ),
    )

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    query: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    instructions: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(TZ)
    next_attempt_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    started_at: Mapped[datetime | None] = mapped_column(TZ)
    finished_at: Mapped[datetime | None] = mapped_column(TZ)
    # The run's agent options: the tools it may call (NULL: all) and its model turns (NULL:
    # AGENT_MAX_STEPS).
    tools: Mapped[Any | None] = mapped_column(JSONB)
    max_steps: Mapped[int | None] = mapped_column(Integer)
    # The JSON Schema its answer must match, as the client wrote it (text: jsonb would reorder
    # its properties, an order models follow); NULL: a text answer. `output` is then JSON text.
    output_schema: Mapped[str | None] = mapped_column(Text)
    # Who is asked when the run calls request_approval (`[{"channel", "email" | "target",
    # "secret"?}]`; NULL: no one, and the run has no such tool), and how long they have (NULL:
    # APPROVAL_TIMEOUT_SECONDS).
    approvers: Mapped[Any | None] = mapped_column(JSONB)
    approval_timeout_seconds: Mapped[float | None] = mapped_column(Double)
    # The name of the API token that created it (API_TOKENS' `name:token`); NULL: an unnamed
    # token's, made with API_TOKENS unset, or made before names existed. Only admins see those.
    created_by: Mapped[str | None] = mapped_column(Text)
    # Higher first, in claims and model slots; scheduling, not part of the run's input.
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The W3C traceparent of the request that started the run (NULL: tracing was off): the
    # parent of the run's span and its deliveries', on any replica.
    traceparent: Mapped[str | None] = mapped_column(Text)


class Step(Base):
    """One model turn or tool call of a run's agent loop: the journal a run is rebuilt from."""

    __tablename__ = "step"
    __table_args__ = (
        ForeignKeyConstraint(["workflow_key"], ["workflow.key"], ondelete="CASCADE"),
        # The run's journal in order: rebuilding a run and paging its steps walk this index.
        UniqueConstraint("workflow_key", "run_created_at", "seq"),
        CheckConstraint(_one_of("kind", STEP_KINDS), name="kind"),
        CheckConstraint(_one_of("status", STEP_STATES), name="status"),
    )

    # Stable across re-executions of the step: a tool can de-duplicate on it.
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workflow_key: Mapped[str] = mapped_column(Text)
    # With the key, the run: a key deleted and used again is another run.
    run_created_at: Mapped[datetime] = mapped_column(TZ)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    input: Mapped[Any | None] = mapped_column(JSONB)
    output: Mapped[Any | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    error: Mapped[str | None] = mapped_column(Text)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Double)
    started_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    finished_at: Mapped[datetime | None] = mapped_column(TZ)


class Promise(Base):
    """A named durable value of a workflow; completing it is first-writer-wins."""

    __tablename__ = "promise"
    __table_args__ = (
        PrimaryKeyConstraint("workflow_key", "name"),
        CheckConstraint(_one_of("state", PROMISE_STATES), name="state"),
    )

    workflow_key: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    value: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    completed_at: Mapped[datetime | None] = mapped_column(TZ)
    # Who claimed the key by subscribing before its run existed (a user token's name).
    created_by: Mapped[str | None] = mapped_column(Text)


class Subscription(Base):
    """One notification owed to one target (an email address, a webhook, an Apprise URL) about
    one workflow's promise."""

    __tablename__ = "subscription"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workflow_key", "promise_name"],
            ["promise.workflow_key", "promise.name"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("workflow_key", "promise_name", "email"),
        CheckConstraint(_one_of("status", SUBSCRIPTION_STATES), name="status"),
        CheckConstraint(_one_of("channel", CHANNELS), name="channel"),
        # An email subscriber has an address; any other, a target (its URL).
        CheckConstraint(
            "(channel = 'email') = (email IS NOT NULL) AND (channel = 'email') = (target IS NULL)",
            name="target",
        ),
        # A target is subscribed once per promise, as an address is.
        Index(
            "ix_subscription_target",
            "workflow_key",
            "promise_name",
            "target",
            unique=True,
            postgresql_where=text("target IS NOT NULL"),
        ),
        # The delivery worker's claim: ready rows whose turn has come.
        Index(
            "ix_subscription_claimable",
            "next_attempt_at",
            postgresql_where=text("status = 'ready'"),
        ),
        # The janitor's expiry of subscriptions that waited too long.
        Index(
            "ix_subscription_waiting_created_at",
            "created_at",
            postgresql_where=text("status = 'waiting'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workflow_key: Mapped[str] = mapped_column(Text)
    promise_name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text, server_default=text("'email'"))
    # The webhook's or Apprise URL (secrets in it never leave the service unmasked).
    target: Mapped[str | None] = mapped_column(Text)
    # A webhook's signing secret (whsec_…).
    secret: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    # The email's Message-ID, or the webhook-id: one per subscription, the same on every send.
    message_id: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(TZ)
    next_attempt_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    ready_at: Mapped[datetime | None] = mapped_column(TZ)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    # The first attempt whose outcome was unknown (the SMTP server never confirmed the message).
    outcome_unknown_at: Mapped[datetime | None] = mapped_column(TZ)


class IdempotencyKey(Base):
    """A POST request made with an Idempotency-Key header, and the response it got."""

    __tablename__ = "idempotency_key"
    __table_args__ = (
        CheckConstraint("char_length(key) BETWEEN 1 AND 256", name="key_length"),
        Index("ix_idempotency_key_created_at", "created_at"),
    )

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    # method, path and a hash of the body: the same key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(Text)
    # The process answering it, on a lease: a claim whose process died can be taken over.
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claim_expires_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    completed_at: Mapped[datetime | None] = mapped_column(TZ)


class SigningKey(Base):
    """A key the service signs its links with (when SECRET_KEY is unset): generated by the
    first process to need it, then shared by every replica."""

    __tablename__ = "signing_key"
    __table_args__ = (CheckConstraint("octet_length(secret) >= 32", name="secret_length"),)

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)


class ModelBucket(Base):
    """One entry of AGENT_MODEL_LIMITS, shared by every replica: its row lock orders the
    taking and giving back of its slots; it counts the current minute's requests and tokens."""

    __tablename__ = "model_bucket"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    window_started_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    window_requests: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    window_tokens: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ModelSlot(Base):
    """A run waiting for (granted_at NULL) or holding a model slot of a bucket, until
    expires_at: a waiter renews it while it waits; a holder's lasts the longest call."""

    __tablename__ = "model_slot"
    __table_args__ = (Index("ix_model_slot_bucket", "bucket"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    bucket: Mapped[str] = mapped_column(Text)
    workflow_key: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    requested_at: Mapped[datetime] = mapped_column(TZ, server_default=NOW)
    granted_at: Mapped[datetime | None] = mapped_column(TZ)
    expires_at: Mapped[datetime] = mapped_column(TZ)


class ModelPause(Base):
    """A model a provider answered 429 for: no replica calls it before paused_until."""

    __tablename__ = "model_pause"

    model: Mapped[str] = mapped_column(Text, primary_key=True)
    paused_until: Mapped[datetime] = mapped_column(TZ)
