"""The store: every state transition and read of the service, over one Database, with the
values every statement of this process shares (its lease owner, the lease length, …) bound
once."""

from __future__ import annotations

from dataclasses import dataclass

from app.db.approvals import Approvals
from app.db.flow import ModelSlots
from app.db.gateway import Database
from app.db.idempotency import IdempotencyKeys
from app.db.keys import SigningKeys
from app.db.promises import Promises
from app.db.reads import Reads
from app.db.runs import Runs
from app.db.scope import Scope
from app.db.steps import Steps
from app.db.subscriptions import Subscriptions


@dataclass(frozen=True, slots=True)
class Store:
    database: Database
    scope: Scope
    runs: Runs
    subscriptions: Subscriptions
    promises: Promises
    reads: Reads
    idempotency: IdempotencyKeys
    steps: Steps
    keys: SigningKeys
    model_slots: ModelSlots
    approvals: Approvals

    @classmethod
    def of(cls, database: Database, scope: Scope) -> Store:
        return cls(
            database=database,
            scope=scope,
            runs=Runs(database, scope),
            subscriptions=Subscriptions(database, scope),
            promises=Promises(database, scope),
            reads=Reads(database),
            idempotency=IdempotencyKeys(database, scope),
            steps=Steps(database, scope),
            keys=SigningKeys(database),
            model_slots=ModelSlots(database, scope),
            approvals=Approvals(database, scope),
        )
