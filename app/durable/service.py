"""What the API asks of the durable layer: start or attach to runs, subscribe, wait, inspect.

Starting a run leases it to this process in the accepting commit and executes it here at once;
a late subscriber's delivery is leased in its own insert and sent at once. Neither adds a commit
to the path from request to email.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from app.config import Settings
from app.durable.delivery import DeliveryWorker
from app.durable.listener import Listener
from app.durable.runner import Runner
from app.durable.store import (
    AGENT_PROMISE,
    InputMismatch,
    RunInput,
    Store,
    Subscribed,
    SubscriptionRow,
    WorkflowRow,
    WorkflowStatus,
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

    async def wait_finished(self, key: str, timeout: float | None = None) -> WorkflowRow | None:
        """The workflow once it has finished; None if `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout) as deadline:
                return await self._wait_finished(key)
        except TimeoutError:
            if deadline.expired():
                return None
            raise

    async def _wait_finished(self, key: str) -> WorkflowRow:
        with self.listener.watch(key) as changed:
            while True:
                changed.clear()
                workflow = await self.store.get_workflow(key)
                if workflow is None:
                    raise NotFound(f"no workflow {key!r}")
                if workflow.finished:
                    return workflow
                await self._wait(changed)

    async def subscribe(self, key: str, email: str) -> Subscribed:
        """Register `email` for the agent's answer; sends at once if it is already there."""
        subscription_id = uuid.uuid4()
        reserved = self.delivery.reserve()
        try:
            subscribed = await self.store.subscribe(
                key,
                email,
                promise_name=AGENT_PROMISE,
                subscription_id=subscription_id,
                message_id=message_id_for(str(subscription_id), self.settings.mail_from),
                deliver_to=self.owner if reserved else None,
                lease_seconds=self.settings.lease_seconds,
                notify_on_failure=self.settings.notify_on_failure,
            )
        finally:
            self.delivery.release(reserved)
        if subscribed.delivery is not None:
            self.delivery.submit(subscribed.delivery)
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

    async def status(self, key: str) -> WorkflowStatus:
        return await self.store.workflow_status(key)

    async def _wait(self, changed: asyncio.Event) -> None:
        # The fallback poll bounds the delay of a notification that never came.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.poll_interval_seconds):
                await changed.wait()
        if self.shutting_down:
            raise Unavailable(
                "this process is shutting down; send the request again (the work itself "
                "is durable and continues)",
                code="shutting_down",
            )
