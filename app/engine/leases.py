"""Keeps the leases of what this process works on from lapsing.

Every LEASE_SECONDS/3 the leases of the runs and deliveries in flight here (and the claims of the
Idempotency-Keys being answered) are extended in one statement, on the database's urgent lane:
a burst of requests holding every other connection cannot delay it. When the LISTEN connection
comes back after a loss they are renewed at once, before anyone is woken to claim lapsed work.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Hashable

from app.db.connection import is_outage
from app.db.runs import Runs
from app.engine.retry import through_outages

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        *,
        runs: Runs,
        lease_seconds: float,
        held_runs: Callable[[], list[Hashable]],
        held_deliveries: Callable[[], list[Hashable]],
        answering: Callable[[], int],
    ) -> None:
        self._runs = runs
        self._held_runs = held_runs
        self._held_deliveries = held_deliveries
        # How many Idempotency-Key requests this process is answering (their claims are leased).
        self._answering = answering
        self.interval = lease_seconds / 3

    async def run(self) -> None:
        """Renew until cancelled; failures are logged and retried at the next tick."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                async with asyncio.timeout(self.interval):
                    await self.renew()
            except Exception as exc:
                if not (isinstance(exc, TimeoutError) or is_outage(exc)):
                    raise
                logger.warning("cannot renew leases (%s: %s)", type(exc).__name__, exc)

    async def renew_now(self) -> None:
        """Renew at once, waiting out a database outage for up to one renewal interval (after
        the LISTEN connection comes back: the pool's connections may be dead too)."""
        async with asyncio.timeout(self.interval):
            await through_outages(self.renew, what="renew this process's leases")

    async def renew(self) -> None:
        """Renew now, if this process holds anything."""
        # The runner holds runs by (key, created_at); a run's lease is renewed by its key.
        run_keys = [run[0] for run in self._held_runs() if isinstance(run, tuple)]
        subscription_ids = [i for i in self._held_deliveries() if isinstance(i, uuid.UUID)]
        answering = self._answering() > 0
        if run_keys or subscription_ids or answering:
            await self._runs.renew_leases(
                run_keys=run_keys,
                subscription_ids=subscription_ids,
                idempotent_requests=answering,
            )
