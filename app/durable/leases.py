"""Keeps the leases of what this process works on from lapsing.

Every LEASE_SECONDS/3 the leases of the runs and deliveries in flight here are extended, in one
statement on the LISTEN connection (a burst of requests holding the query pool cannot delay
it), or on a pooled connection while that one is down. After the LISTEN connection comes back
they are renewed at once, before anyone is woken to claim lapsed work.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import is_outage
from app.durable.listener import Listener
from app.durable.store import Delivery, WorkflowRow, renew_leases
from app.durable.worker import Worker

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        listener: Listener,
        runner: Worker[WorkflowRow],
        delivery: Worker[Delivery],
        owner: str,
        lease_seconds: float,
        answering: Callable[[], int] = lambda: 0,
    ) -> None:
        self._engine = engine
        # How many Idempotency-Key requests this process is answering (their claims are leased).
        self._answering = answering
        self._listener = listener
        self._runner = runner
        self._delivery = delivery
        self._owner = owner
        self._lease_seconds = lease_seconds
        self.interval = lease_seconds / 3

    async def run(self) -> None:
        """Renew until cancelled; failures are logged and retried at the next tick."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.renew()
            except Exception as exc:
                if not (isinstance(exc, TimeoutError) or is_outage(exc)):
                    raise
                logger.warning("cannot renew leases (%s: %s)", type(exc).__name__, exc)

    async def renew(self) -> None:
        if not (self._runner.held() or self._delivery.held() or self._answering()):
            return
        if self._listener.connected:
            try:
                await self._listener.run_on_connection(self.renew_on, timeout=self.interval)
                return
            except ConnectionError:
                pass  # it went down meanwhile: use the pool
        async with asyncio.timeout(self.interval), self._engine.connect() as connection:
            raw = await connection.get_raw_connection()
            await self.renew_on(raw.driver_connection)

    async def renew_on(self, connection: asyncpg.Connection) -> None:
        """Renew on this connection (also the listener's hook right after it reconnects)."""
        # The runner holds runs by (key, created_at); a run's lease is renewed by its key.
        run_keys = [run[0] for run in self._runner.held() if isinstance(run, tuple)]
        subscription_ids = [i for i in self._delivery.held() if isinstance(i, uuid.UUID)]
        answering = self._answering() > 0
        if run_keys or subscription_ids or answering:
            await renew_leases(
                connection,
                owner=self._owner,
                lease_seconds=self._lease_seconds,
                run_keys=run_keys,
                subscription_ids=subscription_ids,
                idempotent_requests=answering,
            )
