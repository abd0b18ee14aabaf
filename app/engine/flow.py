"""Flow control per model, across every replica: AGENT_MODEL_LIMITS' slots and windows, kept
in Postgres (app/db/flow.py), and the pauses a provider's 429 asks for.

A model call takes a slot of its model's bucket (the first AGENT_MODEL_LIMITS entry whose
pattern matches the model): it joins the bucket's waiters in the database and, if no slot is
free, waits for the NOTIFY that grants it one (or for the fallback poll, which also renews its
place), holding no connection meanwhile — and, through `parked`, no runner slot either. Giving
a slot back hands it to the best waiter in the same statement. A replica killed mid-call loses
its slots when they expire.

Pauses cost nothing while there are none: every replica learns of one from its NOTIFY (and
reads them all when its listener connects), and checks it in memory before a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from app.db.flow import BucketLimits, ModelSlots, SlotAnswer, Ticket
from app.engine.retry import through_outages

logger = logging.getLogger(__name__)

Parked = Callable[[], AbstractAsyncContextManager[None]]


@dataclass(slots=True)
class CallUsage:
    """What a call under a slot used, counted in its bucket's window when it is given back."""

    tokens: int = 0


@contextlib.asynccontextmanager
async def _not_parked() -> AsyncIterator[None]:
    yield


class ModelFlow:
    """This process's side of the flow control of every model."""

    def __init__(
        self,
        slots: ModelSlots,
        limits: Sequence[tuple[str, BucketLimits]],
        *,
        poll_interval_seconds: float,
        wait_seconds: float,
        hold_seconds: float,
    ) -> None:
        self._slots = slots
        self._limits = list(limits)
        self._poll_interval_seconds = poll_interval_seconds
        self._wait_seconds = wait_seconds
        self._hold_seconds = hold_seconds
        self._buckets: dict[str, tuple[str, BucketLimits] | None] = {}
        self._waiters: dict[uuid.UUID, asyncio.Event] = {}
        self._granted: set[uuid.UUID] = set()  # waiters told by NOTIFY that they hold a slot
        self._paused_until: dict[str, float] = {}  # model -> loop.time()

    # -- buckets ------------------------------------------------------------------------------

    def bucket_of(self, model: str) -> tuple[str, BucketLimits] | None:
        """The first AGENT_MODEL_LIMITS entry whose pattern matches `model` (case-sensitive
        shell-style patterns: `*`, `?`, `[seq]`), as (pattern, limits); None: no limit."""
        if model not in self._buckets:
            self._buckets[model] = next(
                (
                    (pattern, limits)
                    for pattern, limits in self._limits
                    if fnmatch.fnmatchcase(model, pattern)
                ),
                None,
            )
        return self._buckets[model]

    @contextlib.asynccontextmanager
    async def slot(
        self,
        model: str,
        *,
        workflow_key: str,
        priority: int,
        parked: Parked = _not_parked,
    ) -> AsyncIterator[CallUsage]:
        """Hold a slot of the model's bucket for one call (at once if the model has no limit);
        while waiting for one, the caller is `parked`. Set the usage's tokens after the call."""
        usage = CallUsage()
        bucket = self.bucket_of(model)
        if bucket is None:
            yield usage
            return
        name, limits = bucket
        ticket = Ticket(uuid.uuid4(), name, workflow_key, priority)
        granted = self._waiters[ticket.id] = asyncio.Event()
        try:
            await self._wait_for_slot(ticket, limits, granted, parked)
            yield usage
        finally:
            del self._waiters[ticket.id]
            self._granted.discard(ticket.id)
            # Shielded: a cancelled call still gives its slot (or its place) back now.
            await asyncio.shield(self._give_back(ticket, limits, usage.tokens))

    async def _wait_for_slot(
        self, ticket: Ticket, limits: BucketLimits, granted: asyncio.Event, parked: Parked
    ) -> None:
        answer = await self._take(ticket, limits)
        if answer.granted:
            return
        async with parked():
            while not answer.granted:
                timeout = self._poll_interval_seconds
                if answer.retry_at is not None:
                    room_in = (answer.retry_at - datetime.now(UTC)).total_seconds()
                    timeout = min(timeout, max(0.05, room_in))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await granted.wait()
                if ticket.id in self._granted:
                    # The NOTIFY of a committed grant of this very ticket, which only its
                    # expiry (hold_seconds away) could take back: no need to read it again.
                    return
                # A poll or a reconnection: the database says whether the slot is ours (and
                # renews the place).
                granted.clear()
                answer = await self._take(ticket, limits)

    async def _take(self, ticket: Ticket, limits: BucketLimits) -> SlotAnswer:
        return await through_outages(
            lambda: self._slots.take(
                ticket,
                limits,
                wait_seconds=self._wait_seconds,
                hold_seconds=self._hold_seconds,
            ),
            what=f"ask for a slot of {ticket.bucket}",
        )

    async def _give_back(self, ticket: Ticket, limits: BucketLimits, tokens: int) -> None:
        try:
            await self._slots.give_back(
                ticket, limits, tokens=tokens, hold_seconds=self._hold_seconds
            )
        except Exception as exc:
            logger.warning(
                "cannot give back a slot of %s (%s: %s); it expires on its own",
                ticket.bucket,
                type(exc).__name__,
                exc,
            )

    # -- pauses -------------------------------------------------------------------------------

    def paused_for(self, model: str) -> float:
        """Seconds left of the model's pause (0: not paused)."""
        until = self._paused_until.get(model)
        if until is None:
            return 0.0
        left = until - asyncio.get_running_loop().time()
        if left <= 0:
            del self._paused_until[model]
            return 0.0
        return left

    def pauses(self) -> dict[str, float]:
        """Every model paused now, with the seconds it has left."""
        left = {model: self.paused_for(model) for model in list(self._paused_until)}
        return {model: seconds for model, seconds in left.items() if seconds}

    async def wait_unpaused(self, model: str, parked: Parked = _not_parked) -> None:
        """Return once the model is not paused (at once if it is not), `parked` meanwhile."""
        if not self.paused_for(model):
            return
        async with parked():
            # The pause may grow meanwhile (another 429): its end is read again after each wait.
            while True:
                left = self.paused_for(model)
                if not left:
                    return
                await asyncio.sleep(left)

    async def pause(self, model: str, seconds: float) -> None:
        """Pause the model for every replica (this one at once, the others by NOTIFY)."""
        self._paused(model, seconds)
        logger.warning("model %s paused for %.1f s at the provider's request (429)", model, seconds)
        await through_outages(
            lambda: self._slots.pause(model, seconds), what=f"record the pause of {model}"
        )

    def _paused(self, model: str, seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        self._paused_until[model] = max(self._paused_until.get(model, 0.0), until)

    # -- notifications ------------------------------------------------------------------------

    def notified(self, payload: str) -> None:
        """A notification on the flow channel: a slot granted, or a model paused."""
        kind, _, rest = payload.partition(" ")
        if kind == "grant":
            with contextlib.suppress(ValueError):
                ticket = uuid.UUID(rest)
                event = self._waiters.get(ticket)
                if event is not None:
                    self._granted.add(ticket)
                    event.set()
        elif kind == "pause":
            seconds, _, model = rest.partition(" ")
            with contextlib.suppress(ValueError):
                self._paused(model, float(seconds))

    async def reconnected(self) -> None:
        """When the listener (re)connects: read the pauses, and let every waiter ask again
        (a grant may have been notified meanwhile)."""
        for model, seconds in (await self._slots.pauses()).items():
            self._paused(model, seconds)
        for event in self._waiters.values():
            event.set()
