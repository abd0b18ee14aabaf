"""Background chores: the fallback poll for waiters, and the janitor that expires and deletes.

The fallback poll bounds the delay of a missed NOTIFY for everyone waiting in this process:
every POLL_INTERVAL_SECONDS one query finds which watched workflows changed, and only their
waiters re-read (ten thousand waiters cost one query per interval, not ten thousand).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from app.config import Settings
from app.db.connection import is_outage
from app.db.store import Store
from app.engine.listener import Listener

logger = logging.getLogger(__name__)


class FallbackPoll:
    def __init__(self, *, store: Store, listener: Listener, interval_seconds: float) -> None:
        self._reads = store.reads
        self._listener = listener
        self._interval = interval_seconds
        # A change committed by a transaction that began before the previous poll carries an
        # older updated_at than that poll's clock: look back this far to catch it.
        self._overlap = timedelta(seconds=max(10.0, 2 * interval_seconds))

    async def run(self) -> None:
        since: datetime | None = None
        while True:
            await asyncio.sleep(self._interval)
            keys = self._listener.watched_keys()
            if not keys:
                since = None
                continue
            try:
                changed, now = await self._reads.changed_keys(
                    keys, since=None if since is None else since - self._overlap
                )
            except Exception as exc:
                if not is_outage(exc):
                    raise
                logger.warning("fallback poll failed (%s: %s)", type(exc).__name__, exc)
                since = None  # check everything once the database answers again
                continue
            for key in changed:
                self._listener.wake(key)
            since = now


class Janitor:
    """Expires subscriptions that waited past SUBSCRIPTION_TTL_SECONDS, deletes finished
    workflows after RETENTION and Idempotency-Keys after IDEMPOTENCY_TTL."""

    def __init__(self, *, store: Store, settings: Settings) -> None:
        self._store = store
        self._ttl = settings.subscription_ttl_seconds
        self._retention = settings.retention.total_seconds()
        self._idempotency_ttl = settings.idempotency_ttl.total_seconds()
        self.interval = max(0.2, min(60.0, self._ttl / 4, self._retention / 4))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                logger.warning("janitor: database unavailable (%s: %s)", type(exc).__name__, exc)

    async def sweep(self) -> None:
        store = self._store
        while await store.subscriptions.expire(ttl_seconds=self._ttl):
            pass
        deleted = 0
        while purged := await store.runs.purge(retention_seconds=self._retention):
            deleted += purged
        if deleted:
            logger.info("janitor: deleted %d workflows past their retention", deleted)
        await store.idempotency.purge(ttl_seconds=self._idempotency_ttl)
