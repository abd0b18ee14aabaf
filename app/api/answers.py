"""Response bodies: what the API answers, with the examples the /docs page shows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    JsonValue,
)

from app.api.step_schemas import UsageOut
from app.api.subscribers import ChannelSubscriptionOut, SubscriptionOut, subscription_out
from app.db.rows import (
    PromiseRow,
    WorkflowRow,
    WorkflowStatus,
    WorkflowSummary,
)
from app.states import PromiseState, WorkflowState


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str = Field(examples=["query: must not be empty or only whitespace"])


class ErrorResponse(BaseModel):
    error: ErrorDetail


class RunAccepted(BaseModel):
    key: str = Field(examples=["msg-123"])
    status: Literal["accepted", "previously_accepted"]


class OutputPending(BaseModel):
    key: str = Field(examples=["msg-123"])
    status: Literal["pending", "running", "waiting"] = Field(
        description="Still working on it (`waiting`: for an approval): ask again (the timeout "
        "passed first)."
    )


class RunResult(BaseModel):
    key: str = Field(examples=["msg-123"])
    status: WorkflowState = Field(examples=["succeeded"])
    output: JsonValue = Field(
        description="The agent's answer: text, or the JSON value of a run with an output_schema."
    )


class PromiseOut(BaseModel):
    name: str = Field(examples=["agent_response"])
    state: PromiseState
    value: JsonValue = None
    error: str | None = None
    completed_at: datetime | None = None

    @classmethod
    def of(cls, row: PromiseRow) -> PromiseOut:
        return cls(
            name=row.name,
            state=row.state,
            value=row.value,
            error=row.error,
            completed_at=row.completed_at,
        )


class WorkflowOut(BaseModel):
    key: str = Field(examples=["msg-123"])
    status: WorkflowState | None = Field(
        description="null while nobody has started a run for this key (subscribers may wait)."
    )
    query: str | None = None
    model: str | None = None
    instructions: str | None = None
    output: JsonValue = Field(
        default=None,
        description="The answer: text, or the JSON value of a run with an output_schema.",
    )
    error: str | None = Field(
        default=None, description="Why it failed, or the last transient error while retrying."
    )
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    duration_seconds: float | None = None
    tools: list[str] | None = Field(
        default=None, description="The tools the run may call; null: every configured one."
    )
    max_steps: int | None = Field(
        default=None, description="The run's model turns, at most; null: AGENT_MAX_STEPS."
    )
    priority: int = Field(default=0, description="The run's priority (higher first).")
    output_schema: dict[str, JsonValue] | None = Field(
        default=None, description="The JSON Schema the answer matches; null: a text answer."
    )
    usage: UsageOut | None = Field(
        default=None, description="Tokens and cost summed over the run's steps."
    )
    promise: PromiseOut | None
    subscriptions: list[SubscriptionOut | ChannelSubscriptionOut]

    @classmethod
    def of(cls, status: WorkflowStatus) -> WorkflowOut:
        workflow: WorkflowRow | None = status.workflow
        promise = PromiseOut.of(status.promise) if status.promise is not None else None
        subscriptions = [subscription_out(row) for row in status.subscriptions]
        if workflow is None:
            return cls(key=status.key, status=None, promise=promise, subscriptions=subscriptions)
        duration = None
        if workflow.finished_at is not None:
            duration = (workflow.finished_at - workflow.created_at).total_seconds()
        return cls(
            key=workflow.key,
            status=workflow.status,
            query=workflow.query,
            model=workflow.model,
            instructions=workflow.instructions,
            output=workflow.output_value,
            error=workflow.error,
            attempts=workflow.attempts,
            created_at=workflow.created_at,
            started_at=workflow.started_at,
            finished_at=workflow.finished_at,
            updated_at=workflow.updated_at,
            duration_seconds=duration,
            tools=workflow.tools,
            max_steps=workflow.max_steps,
            priority=workflow.priority,
            output_schema=workflow.schema,
            usage=UsageOut.of(status.usage) if status.usage is not None else None,
            promise=promise,
            subscriptions=subscriptions,
        )


class WorkflowSummaryOut(BaseModel):
    key: str = Field(examples=["msg-123"])
    status: WorkflowState
    query: str = Field(description="The start of the query (200 characters at most).")
    model: str | None = None
    attempts: int
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    subscribers: int
    notified: int
    usage: UsageOut = Field(description="Tokens and cost summed over the run's steps.")

    @classmethod
    def of(cls, row: WorkflowSummary) -> WorkflowSummaryOut:
        duration = None
        if row.finished_at is not None:
            duration = (row.finished_at - row.created_at).total_seconds()
        return cls(
            key=row.key,
            status=row.status,
            query=row.query,
            model=row.model,
            attempts=row.attempts,
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            duration_seconds=duration,
            subscribers=row.subscribers,
            notified=row.notified,
            usage=UsageOut.of(row.usage),
        )


class WorkflowList(BaseModel):
    items: list[WorkflowSummaryOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )
