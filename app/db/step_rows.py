"""Rows of the step journal (a run's model turns and tool calls) and their sums, as the
gateway returns them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.db.rows import _FromColumns
from app.states import StepKind, StepState


@dataclass(frozen=True, slots=True)
class StepRow(_FromColumns):
    """One model turn or tool call of a run, as journaled."""

    id: uuid.UUID
    workflow_key: str
    run_created_at: datetime
    seq: int
    kind: StepKind
    name: str
    input: Any
    output: Any
    status: StepState
    attempts: int
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    started_at: datetime
    finished_at: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StepKind(self.kind))
        object.__setattr__(self, "status", StepState(self.status))


@dataclass(frozen=True, slots=True)
class StepSummary(_FromColumns):
    """One step as the API lists it: input and output as JSON text, cut to a length, with
    their full lengths."""

    id: uuid.UUID
    seq: int
    kind: StepKind
    name: str
    status: StepState
    attempts: int
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    started_at: datetime
    finished_at: datetime | None
    input: str | None
    input_length: int | None
    output: str | None
    output_length: int | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StepKind(self.kind))
        object.__setattr__(self, "status", StepState(self.status))
