"""What the API asks of the service: start or attach to runs, subscribe, unsubscribe, complete
and cancel, wait, inspect — and the process's own Idempotency-Key claims.

Starting a run leases it to this process in the accepting commit and executes it here at once;
a late subscriber's delivery is leased in its own insert and sent at once. Neither adds a commit
to the path from request to email.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

from app.config import Settings
from app.db.rows import (
    Cancellation,
    Delivery,
    IdempotentResponse,
    PromiseCompletion,
    PromiseRow,
    RunInput,
    Subscribed,
    SubscriptionRow,
    WorkflowRow,
    WorkflowStatus,
    WorkflowSummary,
)
from app.db.runs import InputMismatch, KeyTaken, UnknownWorkflow
from app.db.step_rows import StepSummary
from app.db.store import Store
from app.db.subscriptions import TooManySubscriptions
from app.engine.listener import Listener, Wakeup
from app.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.notify import Links, message_id_for, new_secret, webhook_id_for
from app.states import AGENT_PROMISE, Channel, PromiseState
from app.tracing import current_traceparent
from app.workflows.approvals import Deciding
from app.workflows.cursor import decode_cursor, encode_cursor
from app.workflows.delivery import DeliveryWorker
from app.workflows.resume import Resuming
from app.workflows.run_input import check_run_input, input_conflict, key_taken
from app.workflows.runner import Runner
from app.workflows.subscribers import SubscriberChecks
from app.workflows.unsubscribe import Unsubscribing

# How much of a step's input and output (JSON text) the steps endpoint shows.
STEP_TEXT_CHARS = 4096
# Room reserved in this process's delivery worker for the subscribers a cancel or an outside
# completion releases; more than this are left to whichever worker claims them first.
RELEASE_ROOM = 16


class WorkflowService:
    def __init__(
        self,
        *,
        store: Store,
        listener: Listener,
        runner: Runner,
        delivery: DeliveryWorker,
        settings: Settings,
        links: Links,
    ) -> None:
        self.settings = settings
        self._targets = SubscriberChecks(settings)
        # One-click unsubscribe, by the signed links of `links` (api/unsubscribe.py).
        self.unsubscribing = Unsubscribing(store=store, listener=listener, links=links)
        # POST …/resume: a failed run continues from its journal (workflows/resume.py).
        self.resuming = Resuming(store=store, listener=listener, settings=settings)
        self.deciding = Deciding(store=store, listener=listener, links=links)  # approvals
        self._store = store
        self._listener = listener
        self._runner = runner
        self._delivery = delivery
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
        self._runner.stop_claiming()
        self._delivery.stop_claiming()
        self._listener.wake_all_waiters()

    # -- runs ---------------------------------------------------------------------------------

    async def start(
        self, key: str, run: RunInput, created_by: str | None = None
    ) -> tuple[WorkflowRow, bool]:
        """Create the workflow (as `created_by`'s) and execute it here, or attach to the existing
        one. Returns the row and whether this call created it; Conflict if the key has another
        input, or (created_by given) is another token's."""
        check_run_input(run, self.settings)
        await self._targets.check_approvers(run.approvers or ())
        # A slot is reserved before the insert, so concurrent requests cannot overfill the runner;
        # a process shutting down leaves new runs to the others.
        with self._runner.room(0 if self.shutting_down else 1) as room:
            try:
                workflow, created = await self._store.runs.accept(
                    key,
                    run,
                    leased=room.granted > 0,
                    created_by=created_by,
                    traceparent=current_traceparent(),
                )
            except KeyTaken as exc:
                raise key_taken(key) from exc
            except InputMismatch as exc:
                raise input_conflict(key) from exc
        if created and room.granted:
            self._runner.submit(workflow, leased_at=room.opened_at)
        return workflow, created

    async def workflow(self, key: str) -> WorkflowRow:
        workflow = await self._store.reads.workflow(key)
        if workflow is None:
            raise NotFound(f"no workflow {key!r}")
        return workflow

    async def wait_finished(self, key: str) -> WorkflowRow:
        """The workflow once it has finished. Cancel it to stop waiting (its watch ends)."""
        with self._listener.watch(key) as changed:
            return await self._until_finished(key, changed)

    async def run(self, key: str, run: RunInput, created_by: str | None = None) -> WorkflowRow:
        """Start the run (or attach to the key's) and wait until it has finished.

        The waiter watches the key from before the insert, so whatever happens to the run once
        start() has read or written its row (a cancel on another replica, say) wakes it; that
        row then stands for the first read. Cancelled (its caller gone), it stops waiting, but
        a start under way still ends: a run accepted here is handed to this process's runner."""
        with self._listener.watch(key) as changed:
            workflow, _created = await asyncio.shield(self.start(key, run, created_by))
            return await self._until_finished(key, changed, workflow)

    async def _until_finished(
        self, key: str, changed: Wakeup, current: WorkflowRow | None = None
    ) -> WorkflowRow:
        """Wait on `changed` (a watch of `key`) until the workflow has finished. `current`, if
        given, is a row read after the watch began: any change since has set `changed`."""
        while True:
            if current is None:
                changed.clear()
                workflow = await self._store.reads.workflow(key)
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
        with self._delivery.room(RELEASE_ROOM) as room:
            try:
                cancellation = await self._store.runs.cancel(key, room=room.granted)
            except UnknownWorkflow as exc:
                raise NotFound(f"no workflow {key!r}") from exc
        self._hand_over(cancellation.deliveries, room.opened_at)
        self._listener.wake(key)
        return cancellation

    async def delete(self, key: str) -> WorkflowRow:
        try:
            deleted = await self._store.runs.delete(key)
        except UnknownWorkflow as exc:
            raise NotFound(f"no workflow {key!r}") from exc
        if deleted is None:
            raise Conflict(
                f"workflow {key!r} is not finished, or its emails are still being sent; "
                "cancel it or wait for it first",
                code="not_finished",
            )
        self._listener.wake(key)
        return deleted

    # -- subscriptions and promises -----------------------------------------------------------

    async def subscribe(
        self, key: str, email: str, promise_name: str = AGENT_PROMISE
    ) -> Subscribed:
        """Register `email` (normalised) for the promise; sends at once if it is already
        complete. InvalidInput if the address may not, or cannot, be emailed."""
        self._targets.check_recipient(email)
        subscription_id = uuid.uuid4()
        with self._delivery.room(1) as room:
            try:
                subscribed = await self._store.subscriptions.subscribe(
                    key,
                    email,
                    promise_name=promise_name,
                    subscription_id=subscription_id,
                    message_id=message_id_for(str(subscription_id), self.settings.mail_from),
                    room=room.granted,
                )
            except TooManySubscriptions as exc:
                raise self._targets.too_many(key) from exc
        if subscribed.delivery is not None:
            self._hand_over([subscribed.delivery], room.opened_at)
        return subscribed

    async def subscribe_channel(
        self, key: str, channel: Channel, target: str, *, secret: str | None, promise_name: str
    ) -> tuple[Subscribed, str | None]:
        """Register a webhook or Apprise `target` for the promise, as `subscribe` an address;
        with it the webhook's secret if this call generated it (to be shown once). InvalidInput
        if the target is malformed or its host not public (TargetNotAllowed)."""
        await self._targets.check_target(channel, target)
        generated = None
        if channel is Channel.WEBHOOK and secret is None:
            secret = generated = new_secret()
        subscription_id = uuid.uuid4()
        with self._delivery.room(1) as room:
            try:
                subscribed = await self._store.subscriptions.subscribe_channel(
                    key,
                    channel,
                    target,
                    secret=secret,
                    promise_name=promise_name,
                    subscription_id=subscription_id,
                    message_id=webhook_id_for(str(subscription_id)),
                    room=room.granted,
                )
            except TooManySubscriptions as exc:
                raise self._targets.too_many(key) from exc
        if subscribed.delivery is not None:
            self._hand_over([subscribed.delivery], room.opened_at)
        # Subscribed before: the secret is the first one, shown when it was made.
        return subscribed, generated if subscribed.created else None

    async def subscription(self, subscription_id: uuid.UUID) -> SubscriptionRow:
        subscription = await self._store.subscriptions.get(subscription_id)
        if subscription is None:
            raise NotFound(f"subscription {subscription_id} no longer exists")
        return subscription

    async def wait_delivered(self, subscription: SubscriptionRow) -> SubscriptionRow:
        """The subscription once its notification is sent or has definitely failed. Cancel it
        to stop waiting (its watch ends); the subscription itself goes on."""
        with self._listener.watch(subscription.workflow_key, str(subscription.id)) as changed:
            while True:
                changed.clear()
                current = await self._store.subscriptions.get(subscription.id)
                if current is None:
                    raise NotFound(f"subscription {subscription.id} no longer exists")
                if current.finished:
                    return current
                await self._wait(changed)

    async def promise(self, key: str, name: str) -> PromiseRow:
        promise = await self._store.promises.get(key, name)
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
        with self._delivery.room(RELEASE_ROOM) as room:
            try:
                completion = await self._store.promises.complete(
                    key, name, value=value, error=error, room=room.granted
                )
            except UnknownWorkflow as exc:
                raise NotFound(
                    f"no workflow {key!r}: promises belong to a workflow; start it first"
                ) from exc
        self._hand_over(completion.deliveries, room.opened_at)
        promise = completion.promise
        if not completion.changed:
            wanted = PromiseState.RESOLVED if error is None else PromiseState.REJECTED
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

    def _hand_over(self, deliveries: list[Delivery], leased_at: float) -> None:
        """Send the deliveries a statement sent after `leased_at` leased to this process."""
        for delivery in deliveries:
            self._delivery.submit(delivery, leased_at=leased_at)

    # -- reads --------------------------------------------------------------------------------

    async def status(self, key: str) -> WorkflowStatus:
        return await self._store.reads.status(key)

    async def list(
        self,
        *,
        status: str | None,
        limit: int,
        cursor: str | None,
        key_prefix: str | None = None,
        created_by: str | None = None,
    ) -> tuple[list[WorkflowSummary], str | None]:
        """A page of workflows (`created_by`'s only, if given), newest first, and the next page's
        cursor (None at the end): a position only, valid with the same filters."""
        before = decode_cursor(cursor) if cursor else None
        rows = await self._store.reads.page(
            status=status, limit=limit + 1, before=before, key_prefix=key_prefix, by=created_by
        )
        page = rows[:limit]
        more = len(rows) > limit
        return page, encode_cursor(page[-1].created_at, page[-1].key) if more else None

    async def steps(
        self, key: str, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[StepSummary], str | None]:
        """A page of the steps of the key's run, in order, and the cursor of the next page."""
        after = -1
        if cursor is not None:
            # Digits of ASCII only (str.isdigit takes "²"), and few enough for an integer column.
            if not re.fullmatch(r"[0-9]{1,9}", cursor):
                raise InvalidInput(
                    "cursor is not one this service gave out; use next_cursor from the previous "
                    "page",
                    code="invalid_cursor",
                )
            after = int(cursor)
        rows = await self._store.steps.page(
            key, after_seq=after, limit=limit + 1, max_chars=STEP_TEXT_CHARS
        )
        if not rows:
            await self.workflow(key)  # NotFound when there is no run at all
        page = rows[:limit]
        return page, str(page[-1].seq) if len(rows) > limit else None

    async def changes(self, key: str, *, steps: bool = False) -> AsyncIterator[None]:
        """Yields now, then after every possible change of workflow `key` or its subscriptions
        (and with `steps`, of its run's steps), until the consumer stops iterating or the
        process shuts down."""
        with self._listener.watch(key, steps=steps) as changed:
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

    # -- Idempotency-Key claims ---------------------------------------------------------------

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around the answer to an Idempotency-Key request: its claim's lease is renewed."""
        self.answering_idempotent += 1
        try:
            yield
        finally:
            self.answering_idempotent -= 1

    async def claim_idempotency_key(self, key: str, fingerprint: str) -> IdempotentResponse | None:
        """None if the key is now this request's; else what was recorded for it."""
        return await self._store.idempotency.claim(key, fingerprint)

    async def record_idempotent_response(
        self, key: str, *, status_code: int, body: bytes, content_type: str | None
    ) -> None:
        await self._store.idempotency.finish(
            key, status_code=status_code, body=body, content_type=content_type
        )

    async def forget_idempotency_key(self, key: str) -> None:
        await self._store.idempotency.forget(key)


def _canonical(value: object) -> str:
    """JSON values compared as JSON (true is not 1, 1 is not 1.0), whatever the key order."""
    return json.dumps(value, sort_keys=True)
