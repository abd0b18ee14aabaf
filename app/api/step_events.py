"""The `step` events of a workflow's event stream: each step of its run as it begins and as it
finishes, read from the step rows (so from whichever replica runs it) after a step statement's
notification or any change of the workflow."""

from __future__ import annotations

from datetime import datetime

from sse_starlette import ServerSentEvent

from app.api.step_schemas import StepOut
from app.db.rows import WorkflowRow
from app.db.step_rows import StepSummary
from app.errors import NotFound
from app.states import StepKind, StepState, WorkflowState
from app.workflows.journal import first_turn_id
from app.workflows.owners import OwnedWorkflows
from app.workflows.service import STEP_TEXT_CHARS

PAGE = 500


class StepEvents:
    """What one stream has announced of a run's steps, and the events that bring it up to date.
    A step seen first when it had finished is announced as begun first, then as finished."""

    def __init__(self, service: OwnedWorkflows, key: str) -> None:
        self._service = service
        self._key = key
        self._run: datetime | None = None  # the created_at of the run followed
        self._announced: dict[int, tuple[int, StepState]] = {}  # seq -> (attempts, status)
        self._settled = -1  # every step up to this seq finished and was announced

    async def since(self, workflow: WorkflowRow) -> list[ServerSentEvent]:
        """Events for what changed in the steps of `workflow`'s run since the last call."""
        if workflow.created_at != self._run:  # a new run of the key: a new journal
            self._run = workflow.created_at
            self._announced.clear()
            self._settled = -1
        events: list[ServerSentEvent] = []
        rows = await self._read()
        if not rows and 0 not in self._announced and workflow.status == WorkflowState.RUNNING:
            # The first model turn: begun by the run's claim, with no row until its result.
            events.append(_event(self._first_turn(workflow)))
            self._announced[0] = (workflow.attempts, StepState.RUNNING)
        for row in rows:
            events.extend(self._changes(row))
        while self._settled + 1 in self._announced and (
            self._announced[self._settled + 1][1] != StepState.RUNNING
        ):
            self._settled += 1
        return events

    async def _read(self) -> list[StepSummary]:
        rows: list[StepSummary] = []
        cursor = None if self._settled < 0 else str(self._settled)
        try:
            while True:
                page, cursor = await self._service.steps(self._key, limit=PAGE, cursor=cursor)
                rows.extend(page)
                if cursor is None:
                    return rows
        except NotFound:
            return rows  # deleted meanwhile: the state events end the stream

    def _changes(self, row: StepSummary) -> list[ServerSentEvent]:
        seen = self._announced.get(row.seq)
        now = (row.attempts, row.status)
        if seen == now:
            return []
        events = []
        if row.status != StepState.RUNNING and seen != (row.attempts, StepState.RUNNING):
            # It began and finished between two looks: announce its beginning first.
            begun = StepOut.of(row, STEP_TEXT_CHARS).model_copy(
                update={
                    "status": StepState.RUNNING,
                    "output": None,
                    "output_length": None,
                    "output_truncated": False,
                    "error": None,
                    "input_tokens": None,
                    "output_tokens": None,
                    "cost_usd": None,
                    "finished_at": None,
                }
            )
            events.append(_event(begun))
        events.append(_event(StepOut.of(row, STEP_TEXT_CHARS)))
        self._announced[row.seq] = now
        return events

    def _first_turn(self, workflow: WorkflowRow) -> StepOut:
        return StepOut(
            id=first_turn_id(workflow.key, workflow.created_at),
            seq=0,
            kind=StepKind.LLM,
            name=workflow.model or self._service.settings.model,
            status=StepState.RUNNING,
            attempts=workflow.attempts,
            input=None,
            input_length=None,
            input_truncated=False,
            output=None,
            output_length=None,
            output_truncated=False,
            started_at=workflow.updated_at,
        )


def _event(step: StepOut) -> ServerSentEvent:
    return ServerSentEvent(event="step", data=step.model_dump_json())
