"""Request and response bodies, with the examples the /docs page shows."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)

from app.addresses import normalize_address
from app.api.step_schemas import UsageOut
from app.config import KEY_PATTERN
from app.db.rows import (
    PromiseRow,
    SubscriptionRow,
    WorkflowRow,
    WorkflowStatus,
    WorkflowSummary,
)
from app.states import (
    AGENT_PROMISE,
    PromiseState,
    SubscriptionState,
    WorkflowState,
)

KEY_DESCRIPTION = (
    "The workflow's key, chosen by the client: 1 to 256 URL-safe characters "
    "(letters, digits, '.', '_', '~', '-'). Every call with the same key addresses the same "
    "workflow."
)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


def _storable(value: str) -> str:
    # Postgres text holds neither NUL nor lone UTF-16 surrogates (which JSON's \\ud800 escapes
    # can smuggle in); refuse them here rather than fail at the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it has a lone surrogate escape)") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
# Not min_length=1: "" would get pydantic's own message, "   " this one; both get this one.
Query = Annotated[Text, AfterValidator(_not_blank), Field(json_schema_extra={"minLength": 1})]


# A tool's name as models accept it (OpenAI's function names).
ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["add"])]


class RunRequest(BaseModel):
    """The agent task. The seed's bare JSON string is accepted as `{"query": <string>}`."""

    model_config = ConfigDict(extra="forbid")

    query: Query = Field(description="What the agent is asked.")
    model: Annotated[Text, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="A litellm model name for this run; default AGENT_MODEL."
    )
    instructions: Annotated[Text, Field(min_length=1)] | None = Field(
        default=None, description="System instructions for this run; default AGENT_INSTRUCTIONS."
    )
    tools: Annotated[list[ToolName], Field(max_length=128)] | None = Field(
        default=None,
        description="The tools this run may call (their names, as `GET /agent` lists them); "
        "default every configured tool, `[]` none.",
        examples=[["add", "multiply"]],
    )
    max_steps: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="Model turns this run may take, at most AGENT_MAX_STEPS (the default); a run "
        "that needs more fails with `max_steps_exceeded`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_string(cls, data: Any) -> Any:
        return {"query": data} if isinstance(data, str) else data


EmailAddress = Annotated[
    str,
    Field(min_length=3, max_length=320, json_schema_extra={"format": "email"}),
    AfterValidator(normalize_address),
]


PromiseName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        pattern=KEY_PATTERN,
        description="A promise of the workflow; `agent_response` is the one the agent resolves.",
        examples=["agent_response", "approval"],
    ),
]


class SubscribeRequest(BaseModel):
    """Who to notify. The seed's bare JSON string is accepted as `{"email": <string>}`."""

    model_config = ConfigDict(extra="forbid")

    email: EmailAddress = Field(description="The address that gets the agent's answer.")
    promise: PromiseName = Field(
        default=AGENT_PROMISE,
        description="The promise whose outcome is emailed; by default the agent's answer.",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_string(cls, data: Any) -> Any:
        return {"email": data} if isinstance(data, str) else data


def _string_or(model: type[BaseModel], string: dict[str, Any]) -> WithJsonSchema:
    """The documented body schema: the seed's bare string, or the canonical object."""
    return WithJsonSchema({"anyOf": [string, model.model_json_schema()]})


RunBody = Annotated[
    RunRequest,
    _string_or(RunRequest, {"type": "string", "minLength": 1, "description": "The query."}),
]
SubscribeBody = Annotated[
    SubscribeRequest,
    _string_or(
        SubscribeRequest, {"type": "string", "format": "email", "description": "The address."}
    ),
]

RUN_EXAMPLES: dict[str, Any] = {
    "seed": {
        "summary": "The seed's form: a bare JSON string",
        "value": "Write a 1000-word description of Durable Execution",
    },
    "object": {
        "summary": "The canonical form, with options",
        "value": {
            "query": "Summarise the idea of durable promises in three sentences",
            "model": "openai/gpt-4o-mini",
            "instructions": "You are a concise technical writer.",
        },
    },
}
SUBSCRIBE_EXAMPLES: dict[str, Any] = {
    "seed": {"summary": "The seed's form: a bare JSON string", "value": "me@example.com"},
    "object": {"summary": "The canonical form", "value": {"email": "me@example.com"}},
    "promise": {
        "summary": "Notified when another promise completes",
        "value": {"email": "me@example.com", "promise": "approval"},
    },
}


def _json_storable(value: JsonValue) -> JsonValue:
    """Postgres jsonb holds neither NUL nor lone surrogates, in keys or strings, nor NaN or
    infinities (which Python's JSON parser lets through)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, str):
        _storable(value)
    elif isinstance(value, list):
        for item in value:
            _json_storable(item)
    elif isinstance(value, dict):
        for name, item in value.items():
            _storable(name)
            _json_storable(item)
    return value


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Annotated[JsonValue, AfterValidator(_json_storable)] = Field(
        description="The promise's value: any JSON.", examples=[{"approved": True}]
    )


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: Annotated[Text, Field(min_length=1, max_length=4000)] = Field(
        description="Why the promise failed.", examples=["the reviewer declined"]
    )


# What each required field of a request body is for: named when a body lacks it.
REQUIRED_FIELDS: dict[str, str] = {
    name: description[:1].lower() + description[1:].rstrip(".")
    for model in (RunRequest, SubscribeRequest, ResolveRequest, RejectRequest)
    for name, field in model.model_fields.items()
    if field.is_required() and (description := field.description)
}


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
    status: Literal["pending", "running"] = Field(
        description="Still working on it: ask again (the timeout passed first)."
    )


class RunResult(BaseModel):
    key: str = Field(examples=["msg-123"])
    status: WorkflowState = Field(examples=["succeeded"])
    output: str = Field(description="The agent's answer.")


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    key: str = Field(examples=["msg-123"])
    promise: str = Field(examples=["agent_response"], description="The promise it waits for.")
    email: str = Field(examples=["me@example.com"])
    status: SubscriptionState
    message_id: str = Field(
        description="The Message-ID the email carries (stable across re-sends)."
    )
    attempts: int
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    outcome_unknown_at: datetime | None = Field(
        default=None,
        description=(
            "Set when an attempt's outcome was unknown: the SMTP server was sent the email but "
            "never confirmed it, so it may have arrived. It is then sent once more, later, with "
            "the same Message-ID; a second unknown outcome fails the subscription."
        ),
    )

    @classmethod
    def of(cls, row: SubscriptionRow) -> SubscriptionOut:
        return cls(
            id=row.id,
            key=row.workflow_key,
            promise=row.promise_name,
            email=row.email,
            status=row.status,
            message_id=row.message_id,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=row.sent_at,
            outcome_unknown_at=row.outcome_unknown_at,
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
    output: str | None = None
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
    usage: UsageOut | None = Field(
        default=None, description="Tokens and cost summed over the run's steps."
    )
    promise: PromiseOut | None
    subscriptions: list[SubscriptionOut]

    @classmethod
    def of(cls, status: WorkflowStatus) -> WorkflowOut:
        workflow: WorkflowRow | None = status.workflow
        promise = PromiseOut.of(status.promise) if status.promise is not None else None
        subscriptions = [SubscriptionOut.of(row) for row in status.subscriptions]
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
            output=workflow.output,
            error=workflow.error,
            attempts=workflow.attempts,
            created_at=workflow.created_at,
            started_at=workflow.started_at,
            finished_at=workflow.finished_at,
            updated_at=workflow.updated_at,
            duration_seconds=duration,
            tools=workflow.tools,
            max_steps=workflow.max_steps,
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
        )


class WorkflowList(BaseModel):
    items: list[WorkflowSummaryOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )
