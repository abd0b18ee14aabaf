"""Who may see and touch which workflow: the one place the API's callers are told apart.

A workflow belongs to the API token that created it (its name, `workflow.created_by`). A
caller is an admin (a plain-form or `admin:name:token` token, or anyone with API_TOKENS
unset), who sees everything, or a user (`name:token`), who sees only its own workflows. To a
user another's workflow does not exist: every operation answers exactly what it answers for a
key never used (404, the same message), and the list leaves it out. Only starting a run under
such a key tells that the key is taken (409 `key_conflict`, nothing of its input or state).

A user's subscriber may come before the run: if nothing of the key exists, the subscriber's
token claims it (`promise.created_by`), so nobody else can start a run there and have its
answer announced to that subscriber; the key is then the user's to run.

Every route reaches the workflows through an `OwnedWorkflows` of its request's caller
(api/deps.workflows_of), never through WorkflowService itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.db.rows import (
    Cancellation,
    PromiseCompletion,
    PromiseRow,
    RunInput,
    Subscribed,
    SubscriptionRow,
    WorkflowRow,
    WorkflowStatus,
    WorkflowSummary,
)
from app.db.step_rows import StepSummary
from app.db.store import Store
from app.errors import NotFound
from app.states import AGENT_PROMISE, Channel
from app.workflows.run_input import key_taken

if TYPE_CHECKING:
    from app.config import Settings
    from app.workflows.service import WorkflowService


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sends a request: an API token's name (None: a plain-form token, or no tokens
    configured) and whether it sees every workflow."""

    name: str | None
    admin: bool

    @property
    def created_by(self) -> str | None:
        """What the workflows it starts record as their creator."""
        return self.name


# With API_TOKENS unset every caller is this one: everything behaves as without owners.
OPEN = Caller(name=None, admin=True)


class OwnedWorkflows:
    """The workflows' facade as one caller may use it: each operation on a key first checks
    that the key is the caller's (for a user), and answers as for an unknown key if not."""

    __slots__ = ("_caller", "_service", "_store")

    def __init__(self, service: WorkflowService, store: Store, caller: Caller) -> None:
        self._service = service
        self._store = store
        self._caller = caller

    @property
    def settings(self) -> Settings:
        return self._service.settings

    @property
    def caller(self) -> Caller:
        return self._caller

    async def _mine(self, key: str) -> bool:
        if self._caller.admin:
            return True
        owner = await self._store.reads.key_owner(key)
        return owner.exists and owner.name == self._caller.name

    async def _check(self, key: str, message: str | None = None) -> None:
        """NotFound (with `message`, the one the operation gives for an unknown key) unless
        the key is the caller's."""
        if not await self._mine(key):
            raise NotFound(message or f"no workflow {key!r}")

    # -- runs ---------------------------------------------------------------------------------

    async def _check_startable(self, key: str) -> None:
        """A user may start a run where nothing exists, or under its own key (attach)."""
        if self._caller.admin:
            return
        owner = await self._store.reads.key_owner(key)
        if owner.exists and owner.name != self._caller.name:
            raise key_taken(key)

    async def start(self, key: str, run: RunInput) -> tuple[WorkflowRow, bool]:
        await self._check_startable(key)
        # A user's accept also refuses a workflow of another token inserted meanwhile.
        return await self._service.start(key, run, self._caller.created_by)

    async def run(self, key: str, run: RunInput) -> WorkflowRow:
        await self._check_startable(key)
        return await self._service.run(key, run, self._caller.created_by)

    async def workflow(self, key: str) -> WorkflowRow:
        await self._check(key)
        return await self._service.workflow(key)

    async def wait_finished(self, key: str) -> WorkflowRow:
        await self._check(key)
        return await self._service.wait_finished(key)

    async def cancel(self, key: str) -> Cancellation:
        await self._check(key)
        return await self._service.cancel(key)

    async def delete(self, key: str) -> WorkflowRow:
        await self._check(key)
        return await self._service.delete(key)

    async def resume(self, key: str, *, max_steps: int | None) -> WorkflowRow:
        await self._check(key)
        return await self._service.resuming.resume(key, max_steps=max_steps)

    # -- subscriptions and promises -----------------------------------------------------------

    async def _check_subscribable(self, key: str) -> None:
        """A user subscribes to its own key, or claims one of which nothing exists yet."""
        if self._caller.admin:
            return
        assert self._caller.name is not None  # a user always has a name
        owner = await self._store.reads.key_owner(key)
        if not owner.exists:
            await self._store.promises.claim_key(key, self._caller.name)
            owner = await self._store.reads.key_owner(key)  # a concurrent claim may have won
        if owner.name != self._caller.name:
            raise NotFound(f"no workflow {key!r}")

    async def subscribe(
        self, key: str, email: str, promise_name: str = AGENT_PROMISE
    ) -> Subscribed:
        await self._check_subscribable(key)
        return await self._service.subscribe(key, email, promise_name)

    async def subscribe_channel(
        self, key: str, channel: Channel, target: str, *, secret: str | None, promise_name: str
    ) -> tuple[Subscribed, str | None]:
        await self._check_subscribable(key)
        return await self._service.subscribe_channel(
            key, channel, target, secret=secret, promise_name=promise_name
        )

    async def subscription(self, subscribed: SubscriptionRow) -> SubscriptionRow:
        """A subscription this caller just made (subscribe's answer), as it is now."""
        return await self._service.subscription(subscribed.id)

    async def wait_delivered(self, subscribed: SubscriptionRow) -> SubscriptionRow:
        """A subscription this caller just made, once it is sent or has failed."""
        return await self._service.wait_delivered(subscribed)

    async def promise(self, key: str, name: str) -> PromiseRow:
        await self._check(key, f"workflow {key!r} has no promise {name!r}")
        return await self._service.promise(key, name)

    async def complete_promise(
        self, key: str, name: str, *, value: object = None, error: str | None = None
    ) -> PromiseCompletion:
        if name != AGENT_PROMISE:  # agent_response: refused alike whoever's the key is
            await self._check(
                key, f"no workflow {key!r}: promises belong to a workflow; start it first"
            )
        return await self._service.complete_promise(key, name, value=value, error=error)

    # -- reads --------------------------------------------------------------------------------

    async def status(self, key: str) -> WorkflowStatus:
        """The key's whole state; for another's key, what an unknown key shows (nothing)."""
        if not await self._mine(key):
            return WorkflowStatus(
                key=key, workflow=None, promise=None, subscriptions=[], usage=None
            )
        return await self._service.status(key)

    async def list(
        self, *, status: str | None, limit: int, cursor: str | None, key_prefix: str | None
    ) -> tuple[list[WorkflowSummary], str | None]:
        """A page of the workflows this caller sees: a user's own, an admin's all."""
        return await self._service.list(
            status=status,
            limit=limit,
            cursor=cursor,
            key_prefix=key_prefix,
            created_by=None if self._caller.admin else self._caller.name,
        )

    async def steps(
        self, key: str, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[StepSummary], str | None]:
        await self._check(key)
        return await self._service.steps(key, limit=limit, cursor=cursor)

    async def changes(self, key: str, *, steps: bool = False) -> AsyncIterator[None]:
        """The service's changes of the key (with `steps`, of its run's steps too); the stream
        re-reads `status`, checked each time."""
        await self._check(key)
        async for change in self._service.changes(key, steps=steps):
            yield change
