"""Runs: accepting, claiming, retrying, completing, cancelling and deleting workflows, and the
leases on them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime

from app.db.connection import sqlstate_of
from app.db.gateway import Database
from app.db.rows import (
    Cancellation,
    PromiseRow,
    RunCompletion,
    RunInput,
    WorkflowRow,
    deliveries_of,
)
from app.db.scope import Scope
from app.db.steps import StepResult
from app.db.wakeups import Wakeups
from app.states import CANCELLED_ERROR

# What agent_notify_complete_run_v2() raises when the run is no longer the caller's.
LEASE_LOST_SQLSTATE = "AN409"


class InputMismatch(Exception):
    """The key exists with a different input."""

    def __init__(self, existing: WorkflowRow) -> None:
        super().__init__(existing.key)
        self.existing = existing


class KeyTaken(Exception):
    """The key exists as another token's workflow."""


class UnknownWorkflow(Exception):
    """No workflow has this key."""


class NotFailed(Exception):
    """The workflow has not failed: there is nothing to resume."""

    def __init__(self, existing: WorkflowRow) -> None:
        super().__init__(existing.key)
        self.existing = existing


class Runs:
    def __init__(self, database: Database, scope: Scope, wakeups: Wakeups) -> None:
        self._db = database
        self._wakeups = wakeups
        self._scope = scope
        self._bound = scope.params()

    async def accept(
        self,
        key: str,
        run: RunInput,
        *,
        leased: bool,
        created_by: str | None = None,
        traceparent: str | None = None,
    ) -> tuple[WorkflowRow, bool]:
        """Insert the workflow, leased to this process (which executes it now) or left for any
        worker, as `created_by`'s, with the trace it joins. Returns the row and whether it was
        created; KeyTaken when the key exists as another's (its input never compared), else
        InputMismatch when it exists with another input."""
        values = {
            "key": key,
            "created_by": created_by,
            "query": run.query,
            "model": run.model,
            "instructions": run.instructions,
            "tools": None if run.tools is None else json.dumps(list(run.tools)),
            "max_steps": run.max_steps,
            "priority": run.priority,
            "output_schema": run.output_schema,
            "approvers": None
            if run.approvers is None
            else json.dumps([approver.to_json() for approver in run.approvers]),
            "approval_timeout_seconds": run.approval_timeout_seconds,
            "traceparent": traceparent,
            **self._bound,
        }
        while True:
            if leased:
                row = await self._db.fetchrow("accept_run_leased", **values)
            else:
                row = await self._db.fetchrow("accept_run_for_any", **values)
                if row is not None:
                    self._wakeups.work("run")
            if row is not None:
                return WorkflowRow.of(row["workflow_row"]), True
            existing = await self._db.fetchrow("select_workflow", key=key)
            if existing is not None:
                break
            # Deleted between the two statements (a DELETE, retention): insert again.
        workflow = WorkflowRow.of(existing["workflow_row"])
        if created_by is not None and workflow.created_by != created_by:
            raise KeyTaken(key)
        if not workflow.input.matches(run):
            raise InputMismatch(workflow)
        return workflow, False

    async def claim(self, *, limit: int) -> list[WorkflowRow]:
        """Lease unfinished runs that nobody holds (or whose holder died) and are due."""
        rows = await self._db.fetch("claim_runs", limit=limit, **self._bound)
        return [WorkflowRow.of(row["workflow_row"]) for row in rows]

    async def retry_later(self, run: WorkflowRow, *, error: str, delay_seconds: float) -> bool:
        """Give the run back, due again after the delay, with the last error recorded; False
        if this process no longer holds it. The run is the one of its key created at its
        created_at: a late retry of a run since deleted leaves the key's new run alone."""
        changed = await self._db.execute(
            "retry_run_later",
            key=run.key,
            created_at=run.created_at,
            error=error,
            delay_seconds=delay_seconds,
            **self._bound,
        )
        return changed == 1

    async def complete(
        self,
        run: WorkflowRow,
        *,
        output: str | None,
        error: str | None,
        room: int,
        step: StepResult | None = None,
    ) -> RunCompletion | None:
        """Finish a leased run (`output` for success, `error` for a terminal failure): record it
        and `step` (the model turn that answered), complete its promise, release its
        subscribers. The oldest `room` of them are leased to this process and returned; None
        when this process no longer holds the run (taken over, or cancelled): then nothing
        changed. A run with an output_schema answers JSON text: the promise's value is the JSON
        value."""
        try:
            row = await self._db.fetchrow(
                "complete_run",
                key=run.key,
                created_at=run.created_at,
                output=output,
                error=error,
                step=None if step is None else step.as_json(),
                structured=run.output_schema is not None,
                room=room,
                **self._bound,
            )
        except Exception as exc:
            if sqlstate_of(exc) == LEASE_LOST_SQLSTATE:
                return None
            raise
        assert row is not None  # the function returns one row or raises
        promise = PromiseRow.of(row["promise_row"])
        deliveries = deliveries_of(row["deliveries"], promise)
        self._wakeups.completed(run.key, leased=len(deliveries), room=room)
        return RunCompletion(WorkflowRow.of(row["workflow_row"]), deliveries)

    async def suspend(
        self, run: WorkflowRow, *, promises: Sequence[str], wake_at: datetime
    ) -> WorkflowRow | None:
        """Hand a leased run back to wait for the decision promises: `waiting` until one is
        made or `wake_at` passes, or `pending` and due now if one was made already. None when
        this process no longer holds the run (nothing changed)."""
        try:
            row = await self._db.fetchrow(
                "suspend_run",
                key=run.key,
                created_at=run.created_at,
                promises=list(promises),
                wake_at=wake_at,
                **self._bound,
            )
        except Exception as exc:
            if sqlstate_of(exc) == LEASE_LOST_SQLSTATE:
                return None
            raise
        assert row is not None
        if not row["waiting"]:
            self._wakeups.work("run")  # decided meanwhile: due again now
        self._wakeups.key(run.key)
        return WorkflowRow.of(row["workflow_row"])

    async def cancel(self, key: str, *, room: int) -> Cancellation:
        """Cancel a pending or running workflow: its promise is rejected as cancelled and its
        subscribers released to be told (`room` of them leased here). A finished one is
        returned unchanged; UnknownWorkflow if there is none."""
        row = await self._db.fetchrow(
            "cancel_workflow", key=key, reason=CANCELLED_ERROR, room=room, **self._bound
        )
        if row is None:
            raise UnknownWorkflow(key)
        workflow = WorkflowRow.of(row["workflow_row"])
        if not row["cancelled"]:
            return Cancellation(workflow, cancelled=False, deliveries=[])
        promise = PromiseRow.of(row["promise_row"])
        deliveries = deliveries_of(row["deliveries"], promise)
        self._wakeups.completed(key, leased=len(deliveries), room=room)
        return Cancellation(workflow, cancelled=True, deliveries=deliveries)

    async def resume(self, key: str, *, max_steps: int | None, nonce: str) -> WorkflowRow:
        """Continue the failed run of `key` from its journal: pending again, its promise
        pending, its subscribers waiting for the new outcome (under Message-IDs made new with
        `nonce`); `max_steps`, if given, replaces the run's. UnknownWorkflow if there is none,
        NotFailed (nothing changed) if it has not failed."""
        row = await self._db.fetchrow(
            "resume_run", key=key, max_steps=max_steps, nonce=nonce, **self._bound
        )
        assert row is not None
        if row["outcome"] == "unknown":
            raise UnknownWorkflow(key)
        workflow = WorkflowRow.of(row["workflow_row"])
        if row["outcome"] == "not_failed":
            raise NotFailed(workflow)
        self._wakeups.work("run")
        self._wakeups.key(key)
        return workflow

    async def delete(self, key: str) -> WorkflowRow | None:
        """Delete a finished workflow with its promises and subscriptions, so the key can be
        used again. Returns the deleted row; None if it is not finished or has notifications
        still on their way (nothing is deleted then); UnknownWorkflow if there is none."""
        row = await self._db.fetchrow("delete_workflow", key=key, **self._bound)
        assert row is not None
        if row["outcome"] == "unknown":
            raise UnknownWorkflow(key)
        if row["outcome"] == "busy":
            return None
        self._wakeups.key(key)
        return WorkflowRow.of(row["workflow_row"])

    async def purge(self, *, retention_seconds: float, limit: int = 500) -> int:
        """Retention: delete up to `limit` keys finished longer ago than the retention (and
        promises no run ever completed whose key has no workflow); how many went."""
        purged: int = await self._db.fetchval(
            "purge_finished", retention_seconds=retention_seconds, limit=limit
        )
        return purged

    async def release_leases(self) -> None:
        """Hand back what this process holds but will not finish, so others take it at once."""
        await self._db.fetchrow("release_leases", **self._bound)
        self._wakeups.work("released")

    async def renew_leases(
        self,
        *,
        run_keys: list[str],
        subscription_ids: list[uuid.UUID],
        idempotent_requests: bool,
    ) -> tuple[set[str], set[uuid.UUID]]:
        """Extend the leases of the runs and deliveries this process works on (and, with
        `idempotent_requests`, the claims of the Idempotency-Keys it is answering), on the
        urgent lane; returns the run keys and subscription ids it still held. A row the process
        holds but no longer works on is not renewed: its lease lapses and someone else takes it."""
        row = await self._db.urgent.fetchrow(
            "renew_leases",
            run_keys=run_keys,
            subscription_ids=subscription_ids,
            idempotent_requests=idempotent_requests,
            **self._bound,
        )
        assert row is not None
        return set(row["runs"]), set(row["deliveries"])

    async def confirm_lease(self, run: WorkflowRow, *, attempts: int) -> bool:
        """Renew the run's lease if attempt `attempts` of this process holds it still."""
        changed = await self._db.execute(
            "confirm_run_lease",
            key=run.key,
            created_at=run.created_at,
            attempts=attempts,
            **self._bound,
        )
        return changed == 1

    @property
    def scope(self) -> Scope:
        return self._scope
