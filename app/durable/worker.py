"""The loop shared by the runner and the delivery worker: claim leased work, process it.

Work reaches a worker two ways: handed over by this process right after the commit that leased
it (the fast path), or claimed from the table with SKIP LOCKED when a notification, a timer or the
fallback poll says some may be claimable (work of other or dead processes, and retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import Generic, TypeVar

from app.db import DATABASE_ERRORS

logger = logging.getLogger(__name__)

Item = TypeVar("Item")


class Worker(Generic[Item]):
    name = "worker"

    def __init__(self, *, concurrency: int, poll_interval_seconds: float) -> None:
        self.concurrency = concurrency
        self._poll_interval_seconds = poll_interval_seconds
        self._inflight: dict[Hashable, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    # -- what subclasses provide --------------------------------------------------------------

    async def claim(self, limit: int) -> list[Item]:
        raise NotImplementedError

    async def process(self, item: Item) -> None:
        raise NotImplementedError

    def identity(self, item: Item) -> Hashable:
        raise NotImplementedError

    # -- the loop -----------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def has_capacity(self) -> bool:
        return not self._stopping and len(self._inflight) < self.concurrency

    def wake(self) -> None:
        self._wake.set()

    def wake_later(self, delay_seconds: float) -> None:
        asyncio.get_running_loop().call_later(delay_seconds, self._wake.set)

    def submit(self, item: Item) -> None:
        """Process an item this process already holds the lease of."""
        identity = self.identity(item)
        if identity in self._inflight:
            return
        task = asyncio.create_task(self._guarded(item), name=f"{self.name}:{identity}")
        self._inflight[identity] = task
        task.add_done_callback(lambda _task: self._done(identity))

    def _done(self, identity: Hashable) -> None:
        self._inflight.pop(identity, None)
        self._wake.set()

    async def _guarded(self, item: Item) -> None:
        try:
            await self.process(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and the item is claimed again; nothing is lost.
            logger.exception(
                "%s failed on %s; it will be retried after its lease expires",
                self.name,
                self.identity(item),
            )

    async def run(self) -> None:
        """Claim and process until cancelled."""
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._inflight)
            if free > 0 and not self._stopping:
                try:
                    claimed = await self.claim(free)
                except DATABASE_ERRORS as exc:
                    # Keep looping: the next poll (or the listener's reconnect) tries again.
                    logger.warning(
                        "%s cannot claim work: %s: %s", self.name, type(exc).__name__, exc
                    )
                    claimed = []
                for item in claimed:
                    self.submit(item)
                if claimed and len(claimed) == free:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_seconds)

    async def drain(self, grace_seconds: float) -> None:
        """Stop taking work; let in-flight items finish within the grace period, cancel the rest."""
        self._stopping = True
        tasks = list(self._inflight.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            logger.info(
                "%s: %d item(s) unfinished at shutdown are handed back", self.name, len(pending)
            )
            await asyncio.wait(pending)
