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
from app.db.wakeups import Wakeups


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
    wakeups: Wakeups

    @classmethod
    def of(cls, database: Database, scope: Scope) -> Store:
        wakeups = Wakeups(database)
        return cls(
            database=database,
            scope=scope,
            runs=Runs(database, scope, wakeups),
            subscriptions=Subscriptions(database, scope, wakeups),
            promises=Promises(database, scope, wakeups),
            reads=Reads(database),
            idempotency=IdempotencyKeys(database, scope),
            steps=Steps(database, scope, wakeups),
            keys=SigningKeys(database),
            model_slots=ModelSlots(database, scope, wakeups),
            approvals=Approvals(database, scope, wakeups),
            wakeups=wakeups,
        )
