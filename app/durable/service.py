"""What the API asks of the durable layer: start or attach to runs, subscribe, complete and
cancel, wait, inspect.

Starting a run leases it to this process in the accepting commit and executes it here at once;
a late subscriber's delivery is leased in its own insert and sent at once. Neither adds a commit
to the path from request to email.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from app.config import KEY_PATTERN, Settings
from app.durable.delivery import DeliveryWorker
from app.durable.listener import Listener, Wakeup
from app.durable.runner import Runner
from app.durable.store import (
    AGENT_PROMISE,
    Cancellation,
    Delivery,
    InputMismatch,
    PromiseCompletion,
    PromiseRow,
    RunInput,
    Store,
    Subscribed,
    SubscriptionRow,
    TooManySubscriptions,
    UnknownWorkflow,
    WorkflowRow,
    WorkflowStatus,
    WorkflowSummary,
)
from app.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.mailer import message_id_for


class WorkflowService:
    def __init__(
        self,
        *,
        store: Store,
        listener: Listener,
        runner: Runner,
        delivery: DeliveryWorker,
        settings: Settings,
        owner: str,
    ) -> None:
        self.store = store
        self.listener = listener
        self.runner = runner
        self.delivery = delivery
        self.settings = settings
        self.owner = owner
        self.shutdown_deadline: float | None = None
        # Idempotency-Key requests being answered here (their claims are leased).
        self.answering_idempotent = 0

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self.shutdown_deadline is not None

    def begin_shutdown(self) -> None:
        """Stop taking new work and release every waiting request; idempotent.

        Called the moment a shutdown signal arrives (before the HTTP server drains), so that
        in-flight work and open connections share one grace period.
        """
        if self.shutdown_deadline is not None:
            return
        loop = asyncio.get_running_loop()
        self.shutdown_deadline = loop.time() + self.settings.shutdown_grace_seconds
        self.runner.stop_claiming()
        self.delivery.stop_claiming()
        self.listener.wake_all_waiters()

    # -- runs ---------------------------------------------------------------------------------

    async def start(self, key: str, run: RunInput) -> tuple[WorkflowRow, bool]:
        """Create the workflow and execute it here, or attach to the existing one.

        Returns the row and whether this call created it; Conflict if the key has another input.
        """
        if run.model is not None and not self.settings.model_allowed(run.model):
            raise InvalidInput(
                f"model {run.model!r} is not allowed; runs use {self.settings.model} unless the "
                "operator allows others (AGENT_ALLOWED_MODELS)",
                code="model_not_allowed",
            )
        if len(run.query) > self.settings.max_query_chars:
            raise InvalidInput(
                f"the query is {len(run.query)} characters long; at most "
                f"{self.settings.max_query_chars} are accepted (MAX_QUERY_CHARS)",
                code="query_too_long",
            )
        # A slot is reserved before the insert, so concurrent requests cannot overfill the runner;
        # a process shutting down leaves new runs to the others.
        reserved = 0 if self.shutting_down else self.runner.reserve()
        try:
            workflow, created = await self.store.accept_run(
                key,
                run,
                owner=self.owner if reserved else None,
                lease_seconds=self.settings.lease_seconds,
            )
        except InputMismatch as exc:
            raise Conflict(
                f"workflow {key!r} already exists with a different input; use a new key "
                "to run another query, or send the same input to attach to it",
                code="key_conflict",
            ) from exc
        finally:
            self.runner.release(reserved)
        if created and reserved:
            self.runner.submit(workflow)
        return workflow, created

    async def workflow(self, key: str) -> WorkflowRow:
        workflow = await self.store.get_workflow(key)
        if workflow is None:
            raise NotFound(f"no workflow {key!r}")
        return workflow

    async def wait_finished(self, key: str, timeout: float | None = None) -> WorkflowRow | None:
        """The workflow once it has finished; None if `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout) as deadline:
                with self.listener.watch(key) as changed:
                    return await self._until_finished(key, changed)
        except TimeoutError:
            if deadline.expired():
                return None
            raise

    async def run(self, key: str, run: RunInput) -> WorkflowRow:
        """Start the run (or attach to the key's) and wait until it has finished.

        The waiter watches the key from before the insert, so whatever happens to the run once
        start() has read or written its row (a cancel on another replica, say) wakes it; that
        row then stands for the first read."""
        with self.listener.watch(key) as changed:
            workflow, _created = await self.start(key, run)
            return await self._until_finished(key, changed, workflow)

    async def _until_finished(
        self, key: str, changed: Wakeup, current: WorkflowRow | None = None
    ) -> WorkflowRow:
        """Wait on `changed` (a watch of `key`) until the workflow has finished. `current`, if
        given, is a row read after the watch began: any change since has set `changed`."""
        while True:
            if current is None:
                changed.clear()
                workflow = await self.store.get_workflow(key)
            else:
                workflow, current = current, None
            if workflow is None:
                raise NotFound(f"no workflow {key!r}")
            if workflow.finished:
                return workflow
            await self._wait(changed)
            finished = changed.finished
            # Finished here, by the run this waiter read (not an earlier one of a key since
            # deleted and made again): the row needs no reading back.
            if finished is not None and finished.created_at == workflow.created_at:
                return finished

    async def cancel(self, key: str) -> Cancellation:
        """Cancel a pending or running workflow; its subscribers are told. Whoever executes it
        abandons the call as soon as it hears of it."""
        try:
            cancellation = await self.delivery.with_room(
                lambda reserve: self.store.cancel_workflow(
                    key,
                    deliver_to=self.owner,
                    reserve=reserve,
                    lease_seconds=self.settings.lease_seconds,
                    notify_on_failure=self.settings.notify_on_failure,
                )
            )
        except UnknownWorkflow as exc:
            raise NotFound(f"no workflow {key!r}") from exc
        self._hand_over(cancellation.deliveries)
        self.listener.wake(key)
        return cancellation

    async def delete(self, key: str) -> WorkflowRow:
        try:
            deleted = await self.store.delete_workflow(key)
        except UnknownWorkflow as exc:
            raise NotFound(f"no workflow {key!r}") from exc
        if deleted is None:
            raise Conflict(
                f"workflow {key!r} is not finished, or its emails are still being sent; "
                "cancel it or wait for it first",
                code="not_finished",
            )
        self.listener.wake(key)
        return deleted

    # -- subscriptions and promises -----------------------------------------------------------

    async def subscribe(
        self, key: str, email: str, promise_name: str = AGENT_PROMISE
    ) -> Subscribed:
        """Register `email` for the promise; sends at once if it is already complete."""
        subscription_id = uuid.uuid4()
        try:
            subscribed = await self.delivery.with_room(
                lambda reserve: self.store.subscribe(
                    key,
                    email,
                    promise_name=promise_name,
                    subscription_id=subscription_id,
                    message_id=message_id_for(str(subscription_id), self.settings.mail_from),
                    deliver_to=self.owner,
                    reserve=reserve,
                    lease_seconds=self.settings.lease_seconds,
                    notify_on_failure=self.settings.notify_on_failure,
                    max_per_workflow=self.settings.max_subscriptions_per_workflow,
                )
            )
        except TooManySubscriptions as exc:
            raise InvalidInput(
                f"workflow {key!r} has {self.settings.max_subscriptions_per_workflow} "
                "subscriptions, the most one may have (MAX_SUBSCRIPTIONS_PER_WORKFLOW)",
                code="too_many_subscriptions",
            ) from exc
        if subscribed.delivery is not None:
            self._hand_over([subscribed.delivery])
        return subscribed

    async def wait_delivered(self, subscription: SubscriptionRow) -> SubscriptionRow:
        """The subscription once its notification is sent or has definitely failed."""
        with self.listener.watch(subscription.workflow_key, str(subscription.id)) as changed:
            while True:
                changed.clear()
                current = await self.store.get_subscription(subscription.id)
                if current is None:
                    raise NotFound(f"subscription {subscription.id} no longer exists")
                if current.finished:
                    return current
                await self._wait(changed)

    async def promise(self, key: str, name: str) -> PromiseRow:
        promise = await self.store.get_promise(key, name)
        if promise is None:
            raise NotFound(f"workflow {key!r} has no promise {name!r}")
        return promise

    async def complete_promise(
        self, key: str, name: str, *, value: object = None, error: str | None = None
    ) -> PromiseCompletion:
        """Resolve (no `error`) or reject a promise from outside; first writer wins. The same
        outcome again changes nothing; a different one is a Conflict."""
        if name == AGENT_PROMISE:
            raise Conflict(
                f"{AGENT_PROMISE!r} is the agent's own answer: the run completes it. To stop the "
                f"run, POST /workflows/{key}/cancel",
                code="agent_promise",
            )
        try:
            completion = await self.delivery.with_room(
                lambda reserve: self.store.complete_promise(
                    key,
                    name,
                    value=value,
                    error=error,
                    deliver_to=self.owner,
                    reserve=reserve,
                    lease_seconds=self.settings.lease_seconds,
                    notify_on_failure=self.settings.notify_on_failure,
                )
            )
        except UnknownWorkflow as exc:
            raise NotFound(
                f"no workflow {key!r}: promises belong to a workflow; start it first"
            ) from exc
        self._hand_over(completion.deliveries)
        promise = completion.promise
        if not completion.changed:
            wanted = "resolved" if error is None else "rejected"
            same = promise.state == wanted and (
                _canonical(promise.value) == _canonical(value)
                if error is None
                else promise.error == error
            )
            if not same:
                raise Conflict(
                    f"promise {name!r} of {key!r} is already {promise.state}, with another "
                    "outcome; the first completion stands",
                    code="promise_already_completed",
                )
        return completion

    def _hand_over(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self.delivery.submit(delivery)

    # -- reads --------------------------------------------------------------------------------

    async def status(self, key: str) -> WorkflowStatus:
        return await self.store.workflow_status(key)

    async def list(
        self, *, status: str | None, limit: int, cursor: str | None, key_prefix: str | None = None
    ) -> tuple[list[WorkflowSummary], str | None]:
        """A page of workflows, newest first, and the cursor of the next page (None at the end).
        The cursor only marks a position, so it stays valid with the same filters."""
        before = decode_cursor(cursor) if cursor else None
        rows = await self.store.list_workflows(
            status=status, limit=limit + 1, before=before, key_prefix=key_prefix or None
        )
        page = rows[:limit]
        more = len(rows) > limit
        return page, encode_cursor(page[-1].created_at, page[-1].key) if more else None

    async def changes(self, key: str) -> AsyncIterator[None]:
        """Yields now, then after every possible change of workflow `key` or its subscriptions,
        until the consumer stops iterating or the process shuts down."""
        with self.listener.watch(key) as changed:
            while True:
                changed.clear()
                yield None
                await self._wait(changed)

    async def _wait(self, changed: asyncio.Event) -> None:
        # Woken by NOTIFY, by this process's own commits, by the fallback poll (which bounds
        # the delay of any missed notification) and by a shutdown.
        await changed.wait()
        if self.shutting_down:
            raise Unavailable(
                "this process is shutting down; send the request again (the work itself "
                "is durable and continues)",
                code="shutting_down",
            )


def _canonical(value: object) -> str:
    """JSON values compared as JSON (true is not 1, 1 is not 1.0), whatever the key order."""
    return json.dumps(value, sort_keys=True)


def encode_cursor(created_at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    invalid = InvalidInput(
        "cursor is not one this service gave out; use next_cursor from the previous page",
        code="invalid_cursor",
    )
    try:
        text, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        created_at = datetime.fromisoformat(text)
        # Postgres' own range; a naive time or an out-of-range one never came from here.
        created_at.astimezone(UTC)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid from exc
    if created_at.tzinfo is None or not re.fullmatch(KEY_PATTERN, key):
        raise invalid
    return created_at, key
