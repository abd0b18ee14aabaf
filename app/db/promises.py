"""Promises: peeking, and completing from outside (a person in the loop, another system)."""

from __future__ import annotations

import json

from app.db.connection import sqlstate_of
from app.db.gateway import Database
from app.db.rows import PromiseCompletion, PromiseRow, deliveries_of
from app.db.runs import UnknownWorkflow
from app.db.scope import Scope
from app.db.wakeups import Wakeups

# What agent_notify_complete_promise_v1() raises when the workflow went while it ran.
UNKNOWN_WORKFLOW_SQLSTATE = "AN404"


class Promises:
    def __init__(self, database: Database, scope: Scope, wakeups: Wakeups) -> None:
        self._db = database
        self._wakeups = wakeups
        self._bound = scope.params()

    async def get(self, key: str, name: str) -> PromiseRow | None:
        row = await self._db.fetchrow("select_promise", key=key, name=name)
        return None if row is None else PromiseRow.of(row["promise_row"])

    async def claim_key(self, key: str, created_by: str) -> None:
        """A subscriber of `created_by` comes before the run: the key becomes theirs, unless
        anything of it exists already (then nothing changes; read key_owner to know whose)."""
        await self._db.execute("claim_key", key=key, created_by=created_by, **self._bound)

    async def complete(
        self, key: str, name: str, *, value: object = None, error: str | None = None, room: int
    ) -> PromiseCompletion:
        """Resolve (`error` None) or reject the promise, creating it if absent; first writer
        wins. Its subscribers are released as when a run completes its promise (`room` of
        them leased here). UnknownWorkflow when the key has no workflow."""
        try:
            row = await self._db.fetchrow(
                "complete_promise",
                key=key,
                name=name,
                value=None if error is not None else json.dumps(value, allow_nan=False),
                error=error,
                room=room,
                **self._bound,
            )
        except Exception as exc:
            if sqlstate_of(exc) == UNKNOWN_WORKFLOW_SQLSTATE:
                raise UnknownWorkflow(key) from exc
            raise
        if row is None:
            raise UnknownWorkflow(key)
        promise = PromiseRow.of(row["promise_row"])
        deliveries = deliveries_of(row["deliveries"], promise)
        if row["changed"]:
            self._wakeups.completed(key, leased=len(deliveries), room=room)
            self._wakeups.work("run")  # a run waiting for this decision is due now
        return PromiseCompletion(promise, row["changed"], deliveries)
