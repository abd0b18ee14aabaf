"""The bodies of a run's steps and usage: what `GET /workflows/{key}/steps` and the workflow's
status show of its agent loop."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from pydantic import BaseModel, Field, JsonValue

from app.db.rows import Usage
from app.db.step_rows import StepSummary
from app.states import StepKind, StepState


class UsageOut(BaseModel):
    input_tokens: int = Field(description="Prompt tokens, summed over the run's model turns.")
    output_tokens: int = Field(description="Completion tokens, summed likewise.")
    cost_usd: float | None = Field(
        description="The price in USD by litellm's cost map; null when it does not know the model."
    )

    @classmethod
    def of(cls, usage: Usage) -> UsageOut:
        return cls(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd,
        )


class StepOut(BaseModel):
    id: uuid.UUID = Field(description="The step's id: the same when the step runs again.")
    seq: int = Field(description="Its place in the run, from 0.")
    kind: StepKind = Field(description="`llm`: a model turn; `tool`: a tool call.")
    name: str = Field(description="The model, or the tool.", examples=["add"])
    status: StepState
    attempts: int = Field(description="Times it was executed (more than 1 after a crash).")
    input: JsonValue = Field(
        description="The messages the turn added, or the tool's arguments (as text when cut)."
    )
    input_length: int | None = Field(description="The full input's length, in JSON characters.")
    input_truncated: bool
    output: JsonValue = Field(
        description="The assistant message, or the tool's result `{content, is_error}`."
    )
    output_length: int | None
    output_truncated: bool
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    started_at: datetime
    finished_at: datetime | None = None

    @classmethod
    def of(cls, row: StepSummary, max_chars: int) -> StepOut:
        input_value, input_cut = _json_or_text(row.input, row.input_length, max_chars)
        output_value, output_cut = _json_or_text(row.output, row.output_length, max_chars)
        return cls(
            id=row.id,
            seq=row.seq,
            kind=row.kind,
            name=row.name,
            status=row.status,
            attempts=row.attempts,
            input=input_value,
            input_length=row.input_length,
            input_truncated=input_cut,
            output=output_value,
            output_length=row.output_length,
            output_truncated=output_cut,
            error=row.error,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cost_usd=row.cost_usd,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


def _json_or_text(text: str | None, length: int | None, max_chars: int) -> tuple[JsonValue, bool]:
    """The value when it was sent whole; its first `max_chars` characters of JSON text when
    it was cut."""
    if text is None:
        return None, False
    if length is not None and length > max_chars:
        return text, True
    parsed: JsonValue = json.loads(text)
    return parsed, False


class StepList(BaseModel):
    items: list[StepOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page (so far)."
    )
