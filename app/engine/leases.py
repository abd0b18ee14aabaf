"""Keeps the leases of what this process works on from lapsing.

Every LEASE_SECONDS/3 the leases of the runs and deliveries in flight here (and the claims of the
Idempotency-Keys being answered) are extended in one statement, on the database's urgent lane:
a burst of requests holding every other connection cannot delay it. What the database renewed
extends each worker's own record of its leases (engine/fence.py); what it did not must be
confirmed before any effect. When the LISTEN connection comes back after a loss they are
renewed at once, before anyone is woken to claim lapsed work.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from app.db.connection import is_outage
from app.db.runs import Runs
from app.engine.fence import LeaseBook
from app.engine.retry import through_outages

logger = logging.getLogger(__name__)


class Holder(Protocol):
    """A worker, as far as its leases go."""

    leases: LeaseBook

    def held(self) -> list[Hashable]: ...


class LeaseKeeper:
    def __init__(
        self,
        *,
        runs: Runs,
        lease_seconds: float,
        run_worker: Holder,
        delivery_worker: Holder,
        answering: Callable[[], int],
    ) -> None:
        self._runs = runs
        self._run_worker = run_worker
        self._delivery_worker = delivery_worker
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
        held_runs: list[tuple[Any, ...]] = [
            run for run in self._run_worker.held() if isinstance(run, tuple)
        ]
        held_deliveries = [i for i in self._delivery_worker.held() if isinstance(i, uuid.UUID)]
        answering = self._answering() > 0
        if not (held_runs or held_deliveries or answering):
            return
        started = LeaseBook.now()
        run_keys, subscription_ids = await self._runs.renew_leases(
            run_keys=[run[0] for run in held_runs],
            subscription_ids=held_deliveries,
            idempotent_requests=answering,
        )
        _record(self._run_worker.leases, held_runs, lambda run: run[0] in run_keys, started)
        _record(
            self._delivery_worker.leases,
            held_deliveries,
            lambda subscription: subscription in subscription_ids,
            started,
        )


def _record(
    leases: LeaseBook,
    held: Sequence[Hashable],
    renewed: Callable[[Any], bool],
    started: float,
) -> None:
    leases.renewed([item for item in held if renewed(item)], started)
    leases.lapsed([item for item in held if not renewed(item)])
