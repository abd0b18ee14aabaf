"""Steps: the journal of a run's agent loop — begun and finished under the run's lease, read
back to rebuild the run, paged for the API."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from app.db.gateway import Database, Record
from app.db.scope import Scope
from app.db.step_rows import StepRow, StepSummary
from app.db.wakeups import Wakeups
from app.states import StepKind, StepState


@dataclass(frozen=True, slots=True)
class StepResult:
    """A step with its result, for a statement that journals both at once: a step no statement
    began (a run's first model turn) or whose result the run's completion records."""

    id: uuid.UUID
    seq: int
    kind: StepKind
    name: str
    input: object
    output: object
    started_at: datetime  # when this attempt began it (this process's clock)
    status: StepState = StepState.SUCCEEDED
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None

    def as_json(self) -> str:
        """The step as a jsonb parameter: agent_notify_complete_run_v2's `p_step` (which takes
        it as succeeded), begin_step's `previous`."""
        text = _json(
            {
                "id": str(self.id),
                "seq": self.seq,
                "kind": str(self.kind),
                "name": self.name,
                "input": self.input,
                "output": self.output,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd,
                "started_at": self.started_at.isoformat(),
                "status": str(self.status),
                "error": self.error,
            }
        )
        assert text is not None
        return text


class Steps:
    def __init__(self, database: Database, scope: Scope, wakeups: Wakeups) -> None:
        self._db = database
        self._wakeups = wakeups
        self._bound = scope.params()

    async def begin(
        self,
        *,
        key: str,
        created_at: datetime,
        attempts: int,
        seq: int,
        kind: StepKind,
        name: str,
        input: object,
        previous: StepResult | None = None,
    ) -> StepRow | None:
        """Journal step `seq` of the run (`key`, `created_at`) as running, if attempt `attempts`
        of this process still holds the run (its lease renewed in the same statement), and the
        `previous` step with its result in the same commit. A step at this seq without a result
        runs again under its id, its attempts counted. None: the run is no longer this
        attempt's (or the step already has a result, or `previous` another one): make no
        effect."""
        row = await self._db.fetchrow(
            "begin_step",
            id=uuid.uuid4(),
            key=key,
            created_at=created_at,
            attempts=attempts,
            seq=seq,
            kind=str(kind),
            name=name,
            input=_json(input),
            previous=None if previous is None else previous.as_json(),
            **self._bound,
        )
        return self._told(row)

    async def finish(
        self,
        step_id: uuid.UUID,
        *,
        status: StepState,
        output: object,
        error: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost_usd: float | None = None,
    ) -> StepRow | None:
        """Record the step's result (`output`, None for a failed model call) and usage; None
        when its run is no longer this process's (taken over, cancelled, deleted)."""
        row = await self._db.fetchrow(
            "finish_step",
            id=step_id,
            status=str(status),
            output=_json(output),
            error=error,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd,
            **self._bound,
        )
        return self._told(row)

    async def record(
        self, step: StepResult, *, key: str, created_at: datetime, attempts: int
    ) -> StepRow | None:
        """Journal a step that no statement began, with its result, if attempt `attempts` of
        this process still holds the run (its lease renewed in the same statement); its attempts
        are the run's. None: the run is no longer this attempt's, or the step has another
        result already."""
        row = await self._db.fetchrow(
            "record_step",
            id=step.id,
            key=key,
            created_at=created_at,
            attempts=attempts,
            seq=step.seq,
            kind=str(step.kind),
            name=step.name,
            input=_json(step.input),
            output=_json(step.output),
            status=str(step.status),
            error=step.error,
            input_tokens=step.input_tokens,
            output_tokens=step.output_tokens,
            cost_usd=step.cost_usd,
            started_at=step.started_at,
            **self._bound,
        )
        return self._told(row)

    def _told(self, row: Record | None) -> StepRow | None:
        """The step a statement journaled, its run's followers woken (None: it changed none)."""
        if row is None:
            return None
        step = StepRow.of(row["step_row"])
        self._wakeups.steps(step.workflow_key)
        return step

    async def of_run(self, key: str, created_at: datetime) -> list[StepRow]:
        """The run's journal, by seq."""
        rows = await self._db.fetch("run_steps", key=key, created_at=created_at)
        return [StepRow.of(row["step_row"]) for row in rows]

    async def page(
        self, key: str, *, after_seq: int, limit: int, max_chars: int
    ) -> list[StepSummary]:
        """Steps of the key's current run after `after_seq`, in order, their input and output
        cut to `max_chars` characters of JSON text."""
        rows = await self._db.fetch(
            "list_steps", key=key, after_seq=after_seq, limit=limit, max_chars=max_chars
        )
        return [StepSummary.of(row) for row in rows]


def _json(value: object) -> str | None:
    """JSON text for a jsonb parameter (None stays NULL)."""
    if value is None:
        return None
    return json.dumps(_storable(value), allow_nan=False)


def _storable(value: object) -> object:
    """`value` with what jsonb cannot hold (NUL, lone surrogates: a model or a tool may write
    them) replaced, in every string and key."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {str(_storable(name)): _storable(item) for name, item in value.items()}
    return value
