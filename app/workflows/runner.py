"""Runs the agent loop for leased workflows and completes their promise with the outcome.

Each model turn and tool call of the loop is a step journaled under the run's lease
(workflows/journal.py): a run taken over, retried or restarted is rebuilt from its steps and
goes on with the first one that has no result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable

from app import tracing
from app.agent import AgentLoop, AgentRun, Outcome, RunSuspended, RunTakenAway
from app.config import Settings
from app.db.rows import Delivery, RunCompletion, WorkflowRow
from app.db.steps import StepResult
from app.db.store import Store
from app.engine.flow import ModelFlow
from app.engine.listener import Listener
from app.engine.retry import RetryPolicy, through_outages
from app.engine.worker import Worker
from app.errors import PermanentError, TransientError, describe
from app.metrics import Metrics
from app.workflows.flow import RunGate
from app.workflows.journal import RunJournal

logger = logging.getLogger(__name__)


class _TakenAway(Exception):
    """The run was cancelled, or its lease passed to another process, while it ran here."""


class Runner(Worker[WorkflowRow]):
    name = "runner"

    def __init__(
        self,
        *,
        store: Store,
        agent: AgentLoop,
        listener: Listener,
        metrics: Metrics,
        settings: Settings,
        delivery: Worker[Delivery],
        flow: ModelFlow,
    ) -> None:
        super().__init__(
            concurrency=settings.runner_concurrency,
            poll_interval_seconds=settings.poll_interval_seconds,
            retry=RetryPolicy.of(settings),
            lease_seconds=settings.lease_seconds,
        )
        self._store = store
        self._agent = agent
        self._listener = listener
        self._metrics = metrics
        self._owner = store.scope.owner
        self._delivery = delivery
        self._flow = flow

    async def claim(self, limit: int) -> list[WorkflowRow]:
        return await self._store.runs.claim(limit=limit)

    def identity(self, item: WorkflowRow) -> Hashable:
        # A key deleted and used again names another run: created_at tells the two apart.
        return item.key, item.created_at

    def describe(self, item: WorkflowRow) -> str:
        return item.key

    def log_fields(self, item: WorkflowRow) -> dict[str, str]:
        return {"workflow_key": item.key}

    def attempts(self, item: WorkflowRow) -> int:
        return item.attempts

    async def process(self, item: WorkflowRow) -> None:
        # Under the request that started the run, wherever and whenever it executes.
        with tracing.span(
            f"invoke_agent {tracing.SERVICE_NAME}",
            detached=True,
            traceparent=item.traceparent,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": tracing.SERVICE_NAME,
                "gen_ai.request.model": item.model,
                "agent_notify.workflow.key": item.key,
                "agent_notify.attempt": item.attempts,
            },
        ):
            await self._process(item)

    async def _process(self, item: WorkflowRow) -> None:
        metrics = self._metrics
        if not await self.fence(item):
            metrics.runs_finished.labels("abandoned").inc()
            return
        metrics.runs_started.inc()
        started = time.perf_counter()
        try:
            output, answer_step = await self._answer_unless_taken_away(item)
        except RunSuspended as suspension:
            await self._suspend(item, suspension)
        except _TakenAway:
            tracing.annotate({"agent_notify.outcome": "abandoned"})
            metrics.runs_finished.labels("abandoned").inc()
            logger.info(
                "workflow %s was cancelled (or taken over); its agent loop is abandoned",
                item.key,
                extra=self.log_fields(item),
            )
            return
        except PermanentError as exc:
            metrics.llm_seconds.labels("permanent_error").observe(time.perf_counter() - started)
            await self.give_up(item, str(exc))
        except TransientError as exc:
            metrics.llm_seconds.labels("transient_error").observe(time.perf_counter() - started)
            await self.recover(item, str(exc))
        else:
            metrics.llm_seconds.labels("ok").observe(time.perf_counter() - started)
            await self._finish(item, output=output, error=None, step=answer_step)

    async def _answer(self, item: WorkflowRow) -> tuple[str, StepResult | None]:
        """The answer, and its model turn for the completion to journal (None: journaled)."""
        identity = self.identity(item)
        journal = RunJournal(
            self._store.steps,
            item,
            attempts=lambda: self.leases.attempts(identity),
            renewed=lambda started: self.leases.renewed([identity], started),
            fence=lambda: self.fence(item),
            metrics=self._metrics,
        )
        run = AgentRun(
            key=item.key,
            query=item.query,
            model=item.model,
            instructions=item.instructions,
            tools=item.tools,
            max_steps=item.max_steps,
            output_schema=item.schema,
            approvals=bool(item.approvers),
            priority=item.priority,
        )
        # While a model call waits for its slot (or a pause), the run gives back its runner slot.
        gate = RunGate(
            self._flow,
            workflow_key=item.key,
            priority=item.priority,
            parked=lambda: self.parked(item),
        )
        try:
            outcome: Outcome = await self._agent.run(run, journal, gate)
        except RunTakenAway as exc:
            raise _TakenAway(item.key) from exc
        except Exception:
            # A failure, a limit, a suspension: the result the journal holds is written before
            # the run's end is (a cancelled run's is not: it is someone else's now, or the
            # process is going away; the step runs again).
            if not await journal.flush():
                raise _TakenAway(item.key) from None
            raise
        step = outcome.answer_step
        return outcome.answer, None if step is None else journal.answer(step)

    async def _answer_unless_taken_away(self, item: WorkflowRow) -> tuple[str, StepResult | None]:
        """The agent's answer; raises _TakenAway as soon as the run is cancelled or another
        process holds it (a step's statement finds the lease gone, or the key's notification
        says so), abandoning the step in flight (it is not worth paying for any more)."""
        with self._listener.watch(item.key) as changed:
            call = asyncio.ensure_future(self._answer(item))
            try:
                while True:
                    changed.clear()
                    woken = asyncio.ensure_future(changed.wait())
                    try:
                        await asyncio.wait({call, woken}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        woken.cancel()
                    if call.done():
                        return call.result()
                    try:
                        current = await self._store.reads.workflow(item.key)
                    except Exception as exc:
                        # Not knowing is no reason to abandon a call already paid for.
                        logger.warning(
                            "cannot check on %s (%s); the call goes on",
                            item.key,
                            describe(exc),
                            extra=self.log_fields(item),
                        )
                        continue
                    if (
                        current is None
                        or current.created_at != item.created_at
                        or current.lease_owner != self._owner
                    ):
                        raise _TakenAway(item.key)
            finally:
                call.cancel()

    async def _suspend(self, item: WorkflowRow, suspension: RunSuspended) -> None:
        """Hand the run back to wait for its decisions: no lease, no slot, until one is made
        (any process) or the deadline passes (the claim's due time)."""
        suspended = await through_outages(
            lambda: self._store.runs.suspend(
                item, promises=suspension.promises, wake_at=suspension.wake_at
            ),
            what=f"suspend {item.key}",
        )
        if suspended is None:
            self._metrics.runs_finished.labels("abandoned").inc()
            return
        tracing.annotate({"agent_notify.outcome": str(suspended.status)})
        self._metrics.runs_finished.labels("waiting").inc()
        logger.info(
            "workflow %s %s for %s",
            item.key,
            "waits" if suspended.status == "waiting" else "goes on at once: decided",
            ", ".join(suspension.promises),
            extra=self.log_fields(item),
        )

    async def confirm_lease(self, item: WorkflowRow, attempts: int) -> bool:
        return await self._store.runs.confirm_lease(item, attempts=attempts)

    async def retry_later(self, item: WorkflowRow, error: str, delay_seconds: float) -> bool:
        self._metrics.runs_finished.labels("retried").inc()
        tracing.failed(f"retried later: {error}")
        return await self._store.runs.retry_later(item, error=error, delay_seconds=delay_seconds)

    async def give_up(self, item: WorkflowRow, error: str) -> None:
        logger.warning("workflow %s failed: %s", item.key, error, extra=self.log_fields(item))
        tracing.failed(error)
        await self._finish(item, output=None, error=error)

    async def _finish(
        self,
        item: WorkflowRow,
        *,
        output: str | None,
        error: str | None,
        step: StepResult | None = None,
    ) -> None:
        # The key's waiters are woken when this ends, with the finished row: none reads it back.
        with self._listener.committing(item.key) as handover:
            try:
                completion = await self._complete(item, output=output, error=error, step=step)
            except Exception as exc:
                if error is not None:
                    raise
                # Not an outage (through_outages waited those out): this answer cannot be
                # stored. Fail the run with the reason rather than pay for the same answer
                # again and again.
                logger.exception(
                    "cannot record the answer of %s", item.key, extra=self.log_fields(item)
                )
                error = f"the answer could not be stored: {describe(exc)}"
                completion = await self._complete(item, output=None, error=error)
            if completion is None:
                logger.warning(
                    "workflow %s was taken over by another process (or cancelled); outcome dropped",
                    item.key,
                    extra=self.log_fields(item),
                )
                return
            handover.finished = completion.workflow
        tracing.annotate({"agent_notify.outcome": "succeeded" if error is None else "failed"})
        self._metrics.runs_finished.labels("succeeded" if error is None else "failed").inc()

    async def _complete(
        self,
        item: WorkflowRow,
        *,
        output: str | None,
        error: str | None,
        step: StepResult | None = None,
    ) -> RunCompletion | None:
        """Record the outcome, waiting out database outages. Subscribers released by it are
        sent from here, as many as the delivery worker has room for (two: most runs have one
        subscriber, and a room left unfilled tells that no subscriber waits for another
        worker, whom the completion then does not wake), reserved once for every attempt. If
        the lease lapses during an outage, whoever took the run over wins."""
        with self._delivery.room(2) as room:
            completion = await through_outages(
                lambda: self._store.runs.complete(
                    item, output=output, error=error, room=room.granted, step=step
                ),
                what=f"record the outcome of {item.key}",
            )
        if completion is not None:
            for delivery in completion.deliveries:
                self._delivery.submit(delivery, leased_at=room.opened_at)
        return completion
