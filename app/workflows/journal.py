"""The journal the agent loop writes, over the step table: bound to one attempt of one run
(its key, created_at, this process as owner, the attempt it holds), waiting out database
outages, and telling the worker's lease book of each renewal a step's statement made.

A step costs at most two statements (begin, finish), and most cost one: a step finished while
no other is in flight is *held* — its result kept here, not yet written — and recorded by the
statement that begins the next step (`begin_step`'s `previous`), in one commit. Nothing the run
does comes between the two: the loop finishes a step and begins the next one, and the next
step's effect (a model call, a tool call) starts only after that commit, so a crash loses
nothing a statement of its own would have kept. Whatever ends the loop otherwise (a failure, a
limit, a suspension) writes what is held first (`flush()`). A run's first model turn is begun
by no statement (the run's claim marked it started, under the fence every effect passes); the
turn that answers is finished by the run's completion (`answer()`), in its transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from app.agent.journal import AnswerStep, StepRecord, StepUsage
from app.db.rows import WorkflowRow
from app.db.step_rows import StepRow
from app.db.steps import StepResult, Steps
from app.engine.fence import LeaseBook
from app.engine.retry import through_outages
from app.llm.messages import JsonObject
from app.metrics import Metrics
from app.states import StepKind, StepState

# The ids of runs' first model turns: one per run, the same in every attempt.
FIRST_TURN_IDS = uuid.UUID("9b1c6f0e-3c4e-4d7b-9a57-0f1d2e3c4b5a")


def first_turn_id(key: str, created_at: datetime) -> uuid.UUID:
    """The id of the run's first model turn (seq 0), known before any row holds it."""
    return uuid.uuid5(FIRST_TURN_IDS, f"{key}\n{created_at.isoformat()}")


@dataclass(frozen=True, slots=True)
class _Begun:
    seq: int
    kind: StepKind
    name: str
    input: object  # kept only for a step no statement began
    started_at: datetime
    written: bool  # whether a statement began it
    began: float  # LeaseBook.now() when the step's effect could begin


class RunJournal:
    def __init__(
        self,
        steps: Steps,
        run: WorkflowRow,
        *,
        attempts: Callable[[], int],
        renewed: Callable[[float], None],
        fence: Callable[[], Awaitable[bool]],
        metrics: Metrics,
    ) -> None:
        self._steps = steps
        self._run = run
        # The attempt this process holds now (the worker's lease book: a run taken again by
        # this process goes on under the newer attempt).
        self._attempts = attempts
        self._renewed = renewed
        # The worker's fence (its lease book, or a statement when the lease may have lapsed).
        self._fence = fence
        self._metrics = metrics
        self._journaled: set[int] = set()  # seqs that have a row
        self._begun: dict[str, _Begun] = {}
        self._held: StepResult | None = None  # finished, to be written with the next begin
        self._writing: asyncio.Future[None] | None = None  # the held result's statement
        self._beginning = 0  # begins whose statement is under way

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
        self._journaled = {row.seq for row in rows}
        return [_record(row) for row in rows]

    async def begin(self, seq: int, kind: StepKind, name: str, input: object) -> str | None:
        run = self._run
        started_at = datetime.now(UTC)
        if seq == 0 and seq not in self._journaled:
            # The run's claim began it: no statement, only the fence before the model call.
            if not await self._fence():
                return None
            step_id = str(first_turn_id(run.key, run.created_at))
            self._begun[step_id] = _Begun(
                seq, kind, name, input, started_at, written=False, began=LeaseBook.now()
            )
            return step_id
        started = LeaseBook.now()
        self._beginning += 1
        try:
            row = await self._begin_statement(seq, kind, name, input)
        finally:
            self._beginning -= 1
        if row is None:
            return None
        self._renewed(started)  # the statement renewed the lease too
        step_id = str(row.id)
        self._begun[step_id] = _Begun(
            seq, kind, name, None, started_at, written=True, began=LeaseBook.now()
        )
        return step_id

    async def _begin_statement(
        self, seq: int, kind: StepKind, name: str, input: object
    ) -> StepRow | None:
        """begin_step, with the held result as its `previous` if there is one. A begin that
        finds it taken by a parallel call's begin waits for that statement: no effect starts
        before the result is written."""
        run = self._run
        previous, self._held = self._held, None
        if previous is None and self._writing is not None:
            await asyncio.shield(self._writing)
        writing = None
        if previous is not None:
            writing = self._writing = asyncio.get_running_loop().create_future()
        try:
            return await through_outages(
                lambda: self._steps.begin(
                    key=run.key,
                    created_at=run.created_at,
                    attempts=self._attempts(),
                    seq=seq,
                    kind=kind,
                    name=name,
                    input=input,
                    previous=previous,
                ),
                what=f"journal step {seq} of {run.key}",
            )
        except BaseException:
            if previous is not None and self._held is None:
                self._held = previous  # not written: flush() (or the next begin) writes it
            raise
        finally:
            if writing is not None:
                writing.set_result(None)
                if self._writing is writing:
                    self._writing = None

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
        begun = self._begun.pop(step_id)  # the loop began it through this journal
        self._observe(begun, status, usage)
        result = _result(step_id, begun, status, output, error, usage)
        if output is not None and not (self._begun or self._beginning or self._held):
            # A result, and no other step in flight or beginning (its statement could not carry
            # it): the next begin (or flush) records it.
            self._held = result
            recorded = True
        elif not begun.written:
            recorded = await self._record(result)
        else:
            recorded = await self._finish(step_id, status, output, error, usage)
        if not recorded:
            self._metrics.steps.labels(str(begun.kind), "abandoned").inc()
        else:
            self._metrics.steps.labels(str(begun.kind), str(status)).inc()
        return recorded

    async def _finish(
        self,
        step_id: str,
        status: StepState,
        output: JsonObject | None,
        error: str | None,
        usage: StepUsage,
    ) -> bool:
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

    async def flush(self) -> bool:
        """Write the held result, if any, before the loop's end is recorded; False when the
        run is no longer this attempt's."""
        held, self._held = self._held, None
        if held is None:
            return True
        # Begun by a statement or not (the first turn), the upsert records it.
        return await self._record(held)

    def answer(self, step: AnswerStep) -> StepResult:
        """The answering turn as the run's completion journals it."""
        begun = self._begun.pop(step.step_id)  # the loop began it through this journal
        self._observe(begun, StepState.SUCCEEDED, step.usage)
        # Counted now, as the turn did succeed (should the completion find the run taken away,
        # the run counts as abandoned).
        self._metrics.steps.labels(str(begun.kind), str(StepState.SUCCEEDED)).inc()
        return _result(step.step_id, begun, StepState.SUCCEEDED, step.output, None, step.usage)

    def _observe(self, begun: _Begun, status: StepState, usage: StepUsage) -> None:
        """The step's tokens (spent whether or not its result is journaled) and duration."""
        if begun.kind == StepKind.LLM:
            for direction, tokens in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
            ):
                if tokens:
                    self._metrics.tokens.labels(begun.name, direction).inc(tokens)
        else:
            outcome = "error" if status == StepState.FAILED else "ok"
            self._metrics.tool_seconds.labels(begun.name, outcome).observe(
                LeaseBook.now() - begun.began
            )

    async def _record(self, step: StepResult) -> bool:
        run = self._run
        started = LeaseBook.now()
        row = await through_outages(
            lambda: self._steps.record(
                step, key=run.key, created_at=run.created_at, attempts=self._attempts()
            ),
            what=f"journal step {step.seq} of {run.key}",
        )
        if row is None:
            return False
        self._renewed(started)
        return True


def _result(
    step_id: str,
    begun: _Begun,
    status: StepState,
    output: JsonObject | None,
    error: str | None,
    usage: StepUsage,
) -> StepResult:
    return StepResult(
        id=uuid.UUID(step_id),
        seq=begun.seq,
        kind=begun.kind,
        name=begun.name,
        input=begun.input,
        output=output,
        started_at=begun.started_at,
        status=status,
        error=error,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
    )


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
