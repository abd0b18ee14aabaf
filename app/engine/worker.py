"""The loop shared by the runner and the delivery worker: claim leased work, process it.

Work reaches a worker two ways: handed over by this process right after the commit that leased
it (the fast path), or claimed from the table with SKIP LOCKED when a notification, a timer or the
fallback poll says some may be claimable (work of other or dead processes, and retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.db.connection import is_outage
from app.engine.fence import LeaseBook
from app.engine.retry import RetryPolicy, through_outages
from app.errors import describe
from app.logs import one_line

logger = logging.getLogger(__name__)

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class Room:
    """Slots reserved in a worker for items a statement is about to lease to this process;
    `opened_at` is a clock reading from before that statement (LeaseBook.now())."""

    granted: int
    opened_at: float


class Worker(Generic[Item]):
    name = "worker"

    def __init__(
        self,
        *,
        concurrency: int,
        poll_interval_seconds: float,
        retry: RetryPolicy,
        lease_seconds: float,
        backlog: int | None = None,
    ) -> None:
        self.concurrency = concurrency
        # How many items this process may hold (lease) at once: `concurrency` being processed,
        # the rest queued for a slot. Bounded, so work beyond it is left to other processes.
        self.capacity = max(backlog or concurrency, concurrency)
        self.retry = retry
        self._poll_interval_seconds = poll_interval_seconds
        self._inflight: dict[Hashable, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        # Items beyond the concurrency wait here for a slot, their leases renewed meanwhile.
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = False  # no more claiming
        self._draining = False  # no more local leases either: the rest is handed back
        self._reserved = 0
        self._shortchanged = False
        # Items waiting for something outside (a model slot) without a slot of this worker.
        self._parked: set[Hashable] = set()
        self._slotless: set[Hashable] = set()  # cancelled while taking their slot back
        self.leases = LeaseBook(lease_seconds)

    # -- what subclasses provide --------------------------------------------------------------

    async def claim(self, limit: int) -> list[Item]:
        raise NotImplementedError

    async def process(self, item: Item) -> None:
        raise NotImplementedError

    def identity(self, item: Item) -> Hashable:
        raise NotImplementedError

    def describe(self, item: Item) -> str:
        """The item in a log line or task name (its identity, unless that reads badly)."""
        return str(self.identity(item))

    def log_fields(self, item: Item) -> dict[str, str]:
        """Fields that tie a log record to its workflow (and subscription)."""
        raise NotImplementedError

    def attempts(self, item: Item) -> int:
        """Attempts so far, this one included (the claim or hand-over counted it)."""
        raise NotImplementedError

    async def confirm_lease(self, item: Item, attempts: int) -> bool:
        """Renew the item's lease if attempt `attempts` of this process still holds it."""
        raise NotImplementedError

    async def retry_later(self, item: Item, error: str, delay_seconds: float) -> bool:
        """Give the item back, due again after the delay; False if its lease was lost."""
        raise NotImplementedError

    async def give_up(self, item: Item, error: str) -> None:
        """Record that the item failed for good, with the reason."""
        raise NotImplementedError

    def outcome_was_unknown(self, item: Item) -> bool:
        """Whether an earlier attempt on the item ended with its outcome unknown."""
        return False

    async def retry_after_unknown_outcome(
        self, item: Item, error: str, delay_seconds: float
    ) -> bool:
        """retry_later, also recording that this attempt's outcome is unknown (workers whose
        effects can end so)."""
        raise NotImplementedError

    # -- the fence ----------------------------------------------------------------------------

    async def fence(self, item: Item) -> bool:
        """Call immediately before an effect (a model call, an email): True if this attempt of
        this process still holds the item's lease — surely, by its own clock, or else confirmed
        (and renewed) in the database. False: the lease passed on; do not make the effect."""
        identity = self.identity(item)
        leases = self.leases
        if leases.surely_ours(identity):
            return True
        started = leases.now()
        attempts = leases.attempts(identity)
        if await through_outages(
            lambda: self.confirm_lease(item, attempts),
            what=f"confirm the lease of {self.describe(item)}",
        ):
            leases.renewed([identity], started)
            return True
        leases.lapsed([identity])
        logger.warning(
            "%s %s: its lease passed to another process (or attempt) before the effect; "
            "not made here",
            self.name,
            self.describe(item),
            extra=self.log_fields(item),
        )
        return False

    # -- failures -----------------------------------------------------------------------------

    async def recover(self, item: Item, error: str, *, outcome_unknown: bool = False) -> None:
        """After a failure worth retrying: retry later with backoff, or give up once the
        attempts are used up.

        `outcome_unknown`: the effect may have happened (an email sent but never confirmed).
        Repeating it may duplicate it, so it is tried once more, after the policy's long
        `unknown_outcome_seconds`; a second unknown outcome gives up.
        """
        attempts = self.attempts(item)
        if outcome_unknown:
            if self.outcome_was_unknown(item):
                await self.give_up(
                    item, f"outcome unknown twice, not tried again (it may have arrived): {error}"
                )
                return
            error = f"outcome unknown: {error}"
        if attempts >= self.retry.max_attempts:
            await self.give_up(item, f"gave up after {attempts} attempts: {error}")
            return
        if outcome_unknown:
            delay = self.retry.unknown_outcome_seconds
            retry = self.retry_after_unknown_outcome
        else:
            delay = self.retry.delay(attempts)
            retry = self.retry_later
        logger.log(
            logging.WARNING if outcome_unknown else logging.INFO,
            "%s %s: attempt %d failed (%s); retrying in %.1fs",
            self.name,
            self.describe(item),
            attempts,
            one_line(error),
            delay,
            extra=self.log_fields(item),
        )
        if await through_outages(
            lambda: retry(item, error, delay),
            what=f"schedule the retry of {self.describe(item)}",
        ):
            self.wake_later(delay)

    # -- the loop -----------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def held(self) -> list[Hashable]:
        """Identities of the items this worker holds (in flight or waiting for a slot)."""
        return list(self._inflight)

    def free_slots(self) -> int:
        """Items this worker can take on now (in flight and reserved ones count as taken, parked
        ones do not)."""
        return max(0, self.capacity - len(self._inflight) + len(self._parked) - self._reserved)

    @contextlib.asynccontextmanager
    async def parked(self, item: Item) -> AsyncIterator[None]:
        """While the item waits on something outside the process (a model slot across the
        replicas), it gives its slot back so another item can run (or be claimed) meanwhile;
        it takes a slot again, waiting for one, at the end. At most `capacity` items are parked
        at once (so a process leases at most twice its capacity); beyond, the item keeps its
        slot while it waits."""
        identity = self.identity(item)
        if identity in self._parked or len(self._parked) >= self.capacity:
            yield
            return
        self._parked.add(identity)
        self._slots.release()
        self._wake.set()
        try:
            yield
        except BaseException:
            # Cancelled or failed while parked: what is left of the item (recording a retry)
            # runs without waiting for a slot again.
            self._parked.discard(identity)
            self._slotless.add(identity)
            raise
        self._parked.discard(identity)
        try:
            await self._slots.acquire()
        except BaseException:
            self._slotless.add(identity)
            raise

    def reserve(self, wanted: int = 1) -> int:
        """Reserve up to `wanted` free slots for items about to be leased to this process (in a
        transaction that is yet to run); returns how many. Give them back with release() just
        before submitting the items, so concurrent callers cannot lease more than fits."""
        if self._draining:
            return 0
        count = min(wanted, self.free_slots())
        self._reserved += count
        if count < wanted:
            self._shortchanged = True
        return count

    @contextlib.contextmanager
    def room(self, wanted: int) -> Iterator[Room]:
        """Room for up to `wanted` items about to be leased to this process by a statement yet
        to run: pass `room.granted` to it, and submit the items it leased right after the
        block (no await in between), so concurrent statements cannot lease more than fits."""
        room = Room(self.reserve(wanted), self.leases.now())
        try:
            yield room
        finally:
            self.release(room.granted)

    def release(self, count: int) -> None:
        self._reserved -= count
        if count and self._shortchanged:
            # Someone got fewer slots than wanted while these were held, and left work for any
            # worker: look for it now that there is room, not at the next poll.
            self._shortchanged = False
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def stop_claiming(self) -> None:
        """Take no new work; what is in flight goes on."""
        self._stopping = True
        self._wake.set()

    def wake_later(self, delay_seconds: float) -> None:
        asyncio.get_running_loop().call_later(delay_seconds, self._wake.set)

    def submit(self, item: Item, *, leased_at: float) -> None:
        """Process an item this process already holds the lease of, taken by a statement sent
        after `leased_at` (LeaseBook.now()). One in flight already is not started twice: it
        goes on under the newer attempt."""
        identity = self.identity(item)
        self.leases.taken(identity, self.attempts(item), leased_at)
        if identity in self._inflight:
            return
        task = asyncio.create_task(self._guarded(item), name=f"{self.name}:{self.describe(item)}")
        self._inflight[identity] = task
        task.add_done_callback(lambda _task: self._done(identity))

    @contextlib.asynccontextmanager
    async def _slot(self, item: Item) -> AsyncIterator[None]:
        """One of the worker's slots while the item is processed (given back meanwhile while
        it is parked)."""
        identity = self.identity(item)
        await self._slots.acquire()
        try:
            yield
        finally:
            if identity in self._slotless:
                self._slotless.discard(identity)
            else:
                self._slots.release()

    def _done(self, identity: Hashable) -> None:
        self._inflight.pop(identity, None)
        self.leases.forget(identity)
        self._wake.set()

    async def _guarded(self, item: Item) -> None:
        try:
            async with self._slot(item):
                if self.attempts(item) > self.retry.max_attempts:
                    # Claimed again and again: every process that took it stopped mid-way.
                    await self.give_up(
                        item,
                        (
                            f"gave up after {self.attempts(item) - 1} attempts: the process "
                            "working on it stopped each time"
                        ),
                    )
                else:
                    await self.process(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug, or a failure nobody foresaw: retrying would only repeat it. The item fails
            # at once with the reason, and the traceback goes to the log.
            logger.exception(
                "%s failed unexpectedly on %s",
                self.name,
                self.describe(item),
                extra=self.log_fields(item),
            )
            try:
                await self.give_up(item, f"internal error: {describe(exc)}")
            except Exception:
                # Once the lease lapses the item is claimed again: nothing is lost.
                logger.exception(
                    "%s could not record the failure of %s; its lease will lapse",
                    self.name,
                    self.describe(item),
                    extra=self.log_fields(item),
                )

    async def run(self) -> None:
        """Claim and process until cancelled."""
        while True:
            self._wake.clear()
            free = self.free_slots()
            if free > 0 and not self._stopping:
                started = self.leases.now()
                try:
                    claimed = await self.claim(free)
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    # Keep looping: the next poll (or the listener's reconnect) tries again.
                    logger.warning(
                        "%s cannot claim work: %s: %s", self.name, type(exc).__name__, exc
                    )
                    claimed = []
                for item in claimed:
                    self.submit(item, leased_at=started)
                if claimed and len(claimed) == free:
                    continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_seconds):
                    await self._wake.wait()

    async def drain(self, grace_seconds: float) -> None:
        """Stop taking work; let in-flight items finish within the grace period, cancel the rest."""
        self.stop_claiming()
        self._draining = True
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
