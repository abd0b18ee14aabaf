"""Sends the notifications of ready subscriptions and records each outcome."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from app import tracing
from app.addresses import mask_target
from app.config import Settings
from app.db.batch import Batcher
from app.db.rows import Delivery, SubscriptionRow
from app.db.store import Store
from app.engine.listener import Listener
from app.engine.retry import RetryPolicy, through_outages
from app.engine.worker import Worker
from app.errors import OutcomeUnknown, PermanentError, TransientError
from app.logs import one_line
from app.metrics import Metrics
from app.notify import (
    AppriseSender,
    Links,
    Mailer,
    MessageLinks,
    Notification,
    WebhookSender,
    build_message,
    event_body,
    subject_and_body,
)
from app.states import Channel

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Channels:
    """The senders of the channels other than email."""

    webhook: WebhookSender
    apprise: AppriseSender

    async def close(self) -> None:
        await self.webhook.close()


class DeliveryWorker(Worker[Delivery]):
    name = "delivery"

    def __init__(
        self,
        *,
        store: Store,
        mailer: Mailer,
        channels: Channels,
        listener: Listener,
        metrics: Metrics,
        settings: Settings,
        links: Links,
    ) -> None:
        super().__init__(
            concurrency=settings.delivery_concurrency,
            # Sends take milliseconds: a short local queue keeps bursts of hand-overs here,
            # on the fast path, instead of sending them round through the table.
            backlog=4 * settings.delivery_concurrency,
            poll_interval_seconds=settings.poll_interval_seconds,
            retry=RetryPolicy.of(
                settings, unknown_outcome_seconds=settings.smtp_unknown_retry_seconds
            ),
            lease_seconds=settings.lease_seconds,
        )
        self._store = store
        self._mailer = mailer
        self._channels = channels
        self._listener = listener
        self._metrics = metrics
        self._settings = settings
        self._links = links
        self._allowed_recipients = settings.allowed_recipients
        # Under load, many sends finish while one `sent` is being recorded: the next batch
        # records them together (one statement and one commit), which also shortens the window
        # in which an accepted email is not yet recorded as sent.
        self._sent: Batcher[uuid.UUID, float | None] = Batcher(self._mark_sent, missing=None)

    async def _mark_sent(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, float | None]:
        # A statement stuck on a half-open connection must not hold every later send's record:
        # it is abandoned and retried as an outage would be.
        try:
            async with asyncio.timeout(self._settings.lease_seconds):
                return dict(await self._store.subscriptions.mark_sent(ids))
        except TimeoutError as exc:
            raise ConnectionError("recording sent emails took too long") from exc

    async def claim(self, limit: int) -> list[Delivery]:
        return await self._store.subscriptions.claim(limit=limit)

    def identity(self, item: Delivery) -> Hashable:
        return item.subscription_id

    def log_fields(self, item: Delivery) -> dict[str, str]:
        return {
            "workflow_key": item.subscription.workflow_key,
            "subscription_id": str(item.subscription_id),
        }

    async def close(self) -> None:
        """After the drain: close the connections kept for reuse."""
        await self._mailer.close()
        await self._channels.close()

    def attempts(self, item: Delivery) -> int:
        return item.attempts

    async def process(self, item: Delivery) -> None:
        subscription = item.subscription
        # In the trace of the request that started the run, however later and wherever sent.
        with tracing.span(
            f"deliver {subscription.channel}",
            detached=True,
            traceparent=await self._traceparent(item),
            attributes={
                "agent_notify.workflow.key": subscription.workflow_key,
                "agent_notify.subscription.id": str(subscription.id),
                "agent_notify.channel": str(subscription.channel),
                "agent_notify.promise": subscription.promise_name,
                "agent_notify.attempt": subscription.attempts,
            },
        ):
            if subscription.channel is Channel.EMAIL:
                await self._process_email(item)
            else:
                await self._process_channel(item)

    async def _traceparent(self, item: Delivery) -> str | None:
        """The stored traceparent of the delivery's run; read only while tracing is on."""
        if not tracing.enabled():
            return None
        try:
            workflow = await self._store.reads.workflow(item.subscription.workflow_key)
        except Exception as exc:  # a trace is no reason to hold up a notification
            logger.debug("no trace for %s: %s", item.subscription.workflow_key, exc)
            return None
        return None if workflow is None else workflow.traceparent

    def _approval_link(self, item: Delivery) -> str | None:
        """The approver's page, when the delivery is an approval request."""
        request = notification_of(item).approval
        deadline = None if request is None else request.get("deadline")
        if not isinstance(deadline, str):
            return None
        return self._links.approval(item.subscription_id, deadline=datetime.fromisoformat(deadline))

    async def _process_email(self, item: Delivery) -> None:
        notification = notification_of(item, approval_link=self._approval_link(item))
        if not self._allowed_recipients.allows(notification.email):
            # Subscribed before the operator narrowed the list.
            await self.give_up(item, "not sent: NOTIFY_ALLOWED_RECIPIENTS does not allow it")
            return
        now = datetime.now(UTC)
        links = MessageLinks(
            dashboard=self._links.dashboard(notification.workflow_key),
            unsubscribe=self._links.unsubscribe(item.subscription_id, now=now),
        )
        try:
            message = build_message(
                notification, mail_from=self._settings.mail_from, now=now, links=links
            )
        except ValueError as exc:
            # An address no email header can hold (a row stored by hand or by an older,
            # laxer release): no attempt will do better.
            await self.give_up(item, f"cannot write an email to this address: {exc}")
            return
        await self._deliver(
            item, lambda: self._mailer.send(message, recipient=notification.email), smtp=True
        )

    async def _process_channel(self, item: Delivery) -> None:
        """A webhook's signed event, or an Apprise notification: fenced, sent and recorded as
        an email is."""
        subscription = item.subscription
        notification = notification_of(item, approval_link=self._approval_link(item))
        target = subscription.target or ""
        if subscription.channel is Channel.WEBHOOK:
            body = event_body(notification)
            secret = subscription.secret or ""

            async def send() -> None:
                await self._channels.webhook.send(
                    target, secret=secret, webhook_id=subscription.message_id, body=body
                )
        else:
            title, text = subject_and_body(notification)

            async def send() -> None:
                await self._channels.apprise.send(target, title=title, body=text)

        await self._deliver(item, send, smtp=False)

    async def _deliver(
        self, item: Delivery, send: Callable[[], Awaitable[None]], *, smtp: bool
    ) -> None:
        """Send once this attempt is sure to hold the lease (the fence), then record the
        outcome: sent, given up, or retried with the backoff."""
        if not await self.fence(item):
            return
        started = time.perf_counter()

        def observe(outcome: str) -> None:
            if smtp:
                self._metrics.smtp_seconds.labels(outcome).observe(time.perf_counter() - started)

        try:
            await send()
        except PermanentError as exc:
            observe("permanent_error")
            await self.give_up(item, str(exc))
        except OutcomeUnknown as exc:
            observe("unknown")
            await self.recover(item, str(exc), outcome_unknown=True)
        except TransientError as exc:
            observe("transient_error")
            await self.recover(item, str(exc))
        else:
            observe("ok")
            if smtp:
                self._metrics.emails.labels("sent").inc()
            await self._sent_and_recorded(item)

    async def _sent_and_recorded(self, item: Delivery) -> None:
        subscription = item.subscription
        try:
            waited = await self._record_sent(item)
        except Exception:
            # Sent, but not recorded: never "failed". The lease lapses and the notification is
            # sent again with the same Message-ID (webhook-id), which receivers de-duplicate.
            logger.exception(
                "notification %s was sent but cannot be recorded; it will be sent again",
                subscription.message_id,
                extra=self.log_fields(item),
            )
            return
        if waited is None:
            logger.warning(
                "notification %s was sent after its lease passed to another process",
                subscription.message_id,
                extra=self.log_fields(item),
            )
        else:
            self._metrics.ready_to_sent_seconds.observe(waited)
        self._listener.wake(subscription.workflow_key, str(subscription.id))

    async def _record_sent(self, item: Delivery) -> float | None:
        """Seconds since the subscription became ready; None if its lease was lost."""
        subscription_id = item.subscription_id
        what = f"record email {item.subscription.message_id} as sent"
        try:
            return await through_outages(lambda: self._sent.submit(subscription_id), what=what)
        except Exception:
            # The batch's statement failed for a reason other than an outage (it may be
            # another item's): record this one alone rather than send the email again.
            logger.exception("cannot %s in a batch; recording it alone", what)
            recorded = await through_outages(
                lambda: self._store.subscriptions.mark_sent([subscription_id]), what=what
            )
            return recorded.get(subscription_id)

    async def confirm_lease(self, item: Delivery, attempts: int) -> bool:
        return await self._store.subscriptions.confirm_lease(
            item.subscription_id, attempts=attempts
        )

    async def retry_later(self, item: Delivery, error: str, delay_seconds: float) -> bool:
        self._metrics.emails.labels("retried").inc()
        tracing.failed(f"retried later: {error}")
        return await self._store.subscriptions.retry_later(
            item.subscription_id, error=error, delay_seconds=delay_seconds
        )

    def outcome_was_unknown(self, item: Delivery) -> bool:
        return item.subscription.outcome_unknown_at is not None

    async def retry_after_unknown_outcome(
        self, item: Delivery, error: str, delay_seconds: float
    ) -> bool:
        self._metrics.emails.labels("unknown").inc()
        tracing.failed(f"outcome unknown, retried later: {error}")
        return await self._store.subscriptions.retry_later(
            item.subscription_id, error=error, delay_seconds=delay_seconds, outcome_unknown=True
        )

    async def give_up(self, item: Delivery, error: str) -> None:
        subscription = item.subscription
        tracing.failed(error)
        logger.warning(
            "notification %s to %s failed: %s",
            subscription.message_id,
            one_line(shown_address(subscription)),
            one_line(error),
            extra=self.log_fields(item),
        )
        await through_outages(
            lambda: self._store.subscriptions.fail(subscription.id, error=error),
            what=f"record the failure of notification {subscription.message_id}",
        )
        if subscription.channel is Channel.EMAIL:
            self._metrics.emails.labels("failed").inc()
        self._listener.wake(subscription.workflow_key, str(subscription.id))


def notification_of(delivery: Delivery, *, approval_link: str | None = None) -> Notification:
    """What the subscriber of a delivery is owed: its promise's outcome (an approver: the
    request, with the page where they decide)."""
    subscription, promise = delivery.subscription, delivery.promise
    return Notification(
        email=shown_address(subscription),
        message_id=subscription.message_id,
        workflow_key=subscription.workflow_key,
        promise=subscription.promise_name,
        state=promise.state,
        value=promise.value,
        error=promise.error,
        approval_link=approval_link,
    )


def shown_address(subscription: SubscriptionRow) -> str:
    """Who a subscription tells, as logs and messages may show it: a target's secrets masked."""
    if subscription.email is not None:
        return subscription.email
    return mask_target(subscription.target or "")
