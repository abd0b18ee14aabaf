"""Approvals: the one statement of a run's request_approval call (its decision promise, its
request sent to the approvers, or the decision recorded as timed out)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.db.connection import sqlstate_of
from app.db.gateway import Database
from app.db.rows import PromiseRow
from app.db.runs import LEASE_LOST_SQLSTATE
from app.db.scope import Scope
from app.db.wakeups import Wakeups


class RunLeaseLost(Exception):
    """The run is no longer leased to this process: nothing changed."""


@dataclass(frozen=True, slots=True)
class ApprovalState:
    """The decision promise of an approval, and its deadline."""

    decision: PromiseRow
    deadline: datetime


class Approvals:
    def __init__(self, database: Database, scope: Scope, wakeups: Wakeups) -> None:
        self._db = database
        self._wakeups = wakeups
        self._bound = scope.params()

    async def request(
        self,
        *,
        key: str,
        created_at: datetime,
        step_id: uuid.UUID,
        request: Mapping[str, object],
        approvers: Sequence[Mapping[str, object]],
        timeout_seconds: float,
    ) -> ApprovalState:
        """The decision promise of the leased run's (`key`, `created_at`) request_approval call
        at step `step_id` (`approval-<seq>`): created pending and
        sent to the `approvers` (each `{"channel", "email", "target", "secret", "id",
        "message_id"}`) if new, recorded as timed out if past its deadline. RunLeaseLost when
        this process no longer holds the run."""
        try:
            row = await self._db.fetchrow(
                "request_approval",
                key=key,
                created_at=created_at,
                step_id=step_id,
                request=json.dumps(request),
                approvers=json.dumps(list(approvers)),
                timeout_seconds=timeout_seconds,
                **self._bound,
            )
        except Exception as exc:
            if sqlstate_of(exc) == LEASE_LOST_SQLSTATE:
                raise RunLeaseLost(key) from exc
            raise
        assert row is not None
        # The request sent (its approvers' subscriptions ready for any worker), or the decision
        # timed out: those following the run read it again.
        self._wakeups.key(key)
        self._wakeups.work("delivery")
        return ApprovalState(PromiseRow.of(row["promise_row"]), row["deadline"])
