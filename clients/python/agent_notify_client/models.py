"""The service's request and response bodies as pydantic models, field for field the schemas of
its `/openapi.json` (tests/integration/test_client_drift.py fails when the two drift apart).

Answers ignore fields they do not know, so an older client reads a newer service's answers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class WorkflowState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    # Suspended on a person's approval (its `request_approval` tool): no lease, no runner slot.
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED}


class PromiseState(StrEnum):
    PENDING = "pending"
    RESOLVED = "resolved"
    REJECTED = "rejected"


class SubscriptionState(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    APPRISE = "apprise"


class StepKind(StrEnum):
    LLM = "llm"
    TOOL = "tool"


class StepState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Answer(BaseModel):
    """A body the service answers: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")


class Request(BaseModel):
    """A body the client sends: exactly the fields the service accepts."""

    model_config = ConfigDict(extra="forbid")


# --- requests


class RunRequest(Request):
    query: str
    model: str | None = None
    instructions: str | None = None
    tools: list[str] | None = None
    max_steps: int | None = None
    # A JSON Schema the answer must satisfy; the output is then that JSON object.
    output_schema: dict[str, JsonValue] | None = None
    # Subscriber targets (the forms of SubscribeRequest) asked by the run's `request_approval`.
    approvers: list[SubscribeRequest] | None = None
    approval_timeout_seconds: float | None = None
    # -100..100, higher first: the order runs are claimed and model slots granted in.
    priority: int = 0


class WebhookRequest(Request):
    url: str
    secret: str | None = None


class SubscribeRequest(Request):
    email: Annotated[str, Field(json_schema_extra={"format": "email"})] | None = None
    webhook: WebhookRequest | None = None
    apprise: str | None = None
    promise: str = "agent_response"


class ResolveRequest(Request):
    value: JsonValue


class RejectRequest(Request):
    error: str


# --- answers


class ErrorDetail(Answer):
    code: str
    message: str


class ErrorResponse(Answer):
    error: ErrorDetail


class RunAccepted(Answer):
    key: str
    status: Literal["accepted", "previously_accepted"]


class OutputPending(Answer):
    key: str
    status: Literal["pending", "running", "waiting"]


class RunResult(Answer):
    key: str
    status: WorkflowState
    # The agent's answer: text, or the JSON object of a run with an `output_schema`.
    output: JsonValue


class Usage(Answer):
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


class Promise(Answer):
    name: str
    state: PromiseState
    value: JsonValue = None
    error: str | None = None
    completed_at: datetime | None = None


class EmailSubscription(Answer):
    id: uuid.UUID
    key: str
    promise: str
    email: str
    status: SubscriptionState
    message_id: str
    attempts: int
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    outcome_unknown_at: datetime | None = None


class ChannelSubscription(Answer):
    """A webhook or Apprise subscriber; its target masked, its secret never shown."""

    id: uuid.UUID
    key: str
    promise: str
    channel: Channel
    target: str
    status: SubscriptionState
    webhook_id: str | None = None
    attempts: int
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


class ChannelSubscribed(ChannelSubscription):
    # A webhook's signing secret when the service generated it: in this answer only.
    secret: str | None = None


Subscription = EmailSubscription | ChannelSubscription


class Workflow(Answer):
    key: str
    status: WorkflowState | None
    query: str | None = None
    model: str | None = None
    instructions: str | None = None
    output: JsonValue = None
    error: str | None = None
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    duration_seconds: float | None = None
    tools: list[str] | None = None
    max_steps: int | None = None
    output_schema: dict[str, JsonValue] | None = None
    priority: int = 0
    usage: Usage | None = None
    promise: Promise | None
    subscriptions: list[EmailSubscription | ChannelSubscription]


class WorkflowSummary(Answer):
    key: str
    status: WorkflowState
    query: str
    model: str | None = None
    attempts: int
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    subscribers: int
    notified: int
    usage: Usage


class WorkflowList(Answer):
    items: list[WorkflowSummary]
    next_cursor: str | None


class Step(Answer):
    id: uuid.UUID
    seq: int
    kind: StepKind
    name: str
    status: StepState
    attempts: int
    input: JsonValue
    input_length: int | None
    input_truncated: bool
    output: JsonValue
    output_length: int | None
    output_truncated: bool
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    started_at: datetime
    finished_at: datetime | None = None


class StepUpdate(Answer):
    """A `step` event of the event stream: a step as it starts and as it finishes. Read
    leniently (what a step's JSON may leave out is optional), so the progress of a run shows
    whatever the service tells of its steps."""

    id: uuid.UUID | None = None
    seq: int
    kind: str
    name: str
    status: str
    attempts: int | None = None
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def identity(self) -> str:
        return str(self.id) if self.id is not None else f"seq-{self.seq}"


class StepList(Answer):
    items: list[Step]
    next_cursor: str | None


class AgentTool(Answer):
    """One tool a run may call, as `GET /agent` lists it; its other fields kept as sent."""

    model_config = ConfigDict(extra="allow")

    name: str


class AgentInfo(Answer):
    """`GET /agent`: the model, the tools and the MCP servers' states; fields this client does
    not name are kept as sent (`model_extra`)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    tools: list[AgentTool] = []


def dump(request: Request) -> dict[str, Any]:
    """A request body: the fields that were set (the service's defaults stand for the rest)."""
    return request.model_dump(mode="json", exclude_unset=True)
