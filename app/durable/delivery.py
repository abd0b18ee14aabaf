"""Sends the notifications of ready subscriptions and records each outcome."""

from __future__ import annotations

import logging
from collections.abc import Hashable

from app.config import Settings
from app.durable.listener import Listener
from app.durable.retry import backoff_delay
from app.durable.store import Delivery, Store
from app.durable.worker import Worker
from app.errors import PermanentError, TransientError
from app.mailer import Mailer, build_message

logger = logging.getLogger(__name__)


class DeliveryWorker(Worker[Delivery]):
    name = "delivery"

    def __init__(
        self,
        *,
        store: Store,
        mailer: Mailer,
        listener: Listener,
        settings: Settings,
        owner: str,
    ) -> None:
        super().__init__(
            concurrency=settings.delivery_concurrency,
            poll_interval_seconds=settings.poll_interval_seconds,
        )
        self._store = store
        self._mailer = mailer
        self._listener = listener
        self._settings = settings
        self._owner = owner

    def lease_owner(self) -> str | None:
        """Who should lease newly ready subscriptions: this process if it has room, else anyone."""
        return self._owner if self.has_capacity() else None

    def hand_off(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self.submit(delivery)

    async def claim(self, limit: int) -> list[Delivery]:
        return await self._store.claim_deliveries(
            owner=self._owner, lease_seconds=self._settings.lease_seconds, limit=limit
        )

    def identity(self, item: Delivery) -> Hashable:
        return item.subscription_id

    async def process(self, item: Delivery) -> None:
        settings = self._settings
        notification = item.notification
        message = build_message(notification, mail_from=settings.mail_from)
        try:
            await self._mailer.send(message)
        except PermanentError as exc:
            logger.warning(
                "email to %s for %s failed: %s", notification.email, notification.workflow_key, exc
            )
            await self._store.fail_delivery(item.subscription_id, owner=self._owner, error=str(exc))
        except TransientError as exc:
            if item.attempts >= settings.retry_max_attempts:
                await self._store.fail_delivery(
                    item.subscription_id,
                    owner=self._owner,
                    error=f"gave up after {item.attempts} attempts: {exc}",
                )
            else:
                delay = backoff_delay(
                    item.attempts,
                    initial=settings.retry_initial_seconds,
                    maximum=settings.retry_max_seconds,
                )
                logger.info(
                    "email to %s attempt %d failed (%s); retrying in %.1fs",
                    notification.email,
                    item.attempts,
                    exc,
                    delay,
                )
                if await self._store.retry_delivery_later(
                    item.subscription_id, owner=self._owner, error=str(exc), delay_seconds=delay
                ):
                    self.wake_later(delay)
                return
        else:
            if not await self._store.mark_sent(item.subscription_id, owner=self._owner):
                logger.warning(
                    "email %s was sent but its lease had passed to another process",
                    notification.message_id,
                )
        self._listener.wake(notification.workflow_key)
