"""The journal the agent loop writes, over the step table: bound to one attempt of one run
(its key, created_at, this process as owner, the attempt it holds), waiting out database
outages, and telling the worker's lease book of each renewal a step's statement made."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from app.agent.journal import StepRecord, StepUsage
from app.db.rows import WorkflowRow
from app.db.step_rows import StepRow
from app.db.steps import Steps
from app.engine.fence import LeaseBook
from app.engine.retry import through_outages
from app.llm.messages import JsonObject
from app.states import StepKind, StepState


class RunJournal:
    def __init__(
        self,
        steps: Steps,
        run: WorkflowRow,
        *,
        attempts: Callable[[], int],
        renewed: Callable[[float], None],
    ) -> None:
        self._steps = steps
        self._run = run
        # The attempt this process holds now (the worker's lease book: a run taken again by
        # this process goes on under the newer attempt).
        self._attempts = attempts
        self._renewed = renewed

    async def load(self) -> Sequence[StepRecord]:
        run = self._run
        if run.attempts == 1:
            # A run's first attempt has no steps yet: steps are written only under a lease,
            # and every lease after the first counts another attempt (claim_runs). No read on
            # the path of a fresh run. (Whatever resets a run's attempts must drop this.)
            return []
        rows = await through_outages(
            lambda: self._steps.of_run(run.key, run.created_at),
            what=f"read the steps of {run.key}",
        )
        return [_record(row) for row in rows]

    async def begin(self, seq: int, kind: StepKind, name: str, input: object) -> str | None:
        run = self._run
        started = LeaseBook.now()
        row = await through_outages(
            lambda: self._steps.begin(
                key=run.key,
                created_at=run.created_at,
                attempts=self._attempts(),
                seq=seq,
                kind=kind,
                name=name,
                input=input,
            ),
            what=f"journal step {seq} of {run.key}",
        )
        if row is None:
            return None
        self._renewed(started)  # the statement renewed the lease too
        return str(row.id)

    async def finish(
        self,
        step_id: str,
        *,
        status: StepState,
        output: JsonObject | None,
        error: str | None = None,
        usage: StepUsage | None = None,
    ) -> bool:
        usage = usage or StepUsage()
        row = await through_outages(
            lambda: self._steps.finish(
                uuid.UUID(step_id),
                status=status,
                output=output,
                error=error,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd,
            ),
            what=f"record a step of {self._run.key}",
        )
        return row is not None


def _record(row: StepRow) -> StepRecord:
    output = row.output if isinstance(row.output, dict) else None
    return StepRecord(
        id=str(row.id),
        seq=row.seq,
        kind=row.kind,
        name=row.name,
        output=output,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
    )
