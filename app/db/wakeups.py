"""Wake-ups for every LISTENing process, sent after the commits that call for them.

A NOTIFY inside a writing transaction makes its commit take Postgres' one notify lock (on
"database 0", for the whole server) and hold it through the commit's WAL flush: notifying
commits go one flush at a time, a ceiling of about a thousand a second on this project's test
machine whatever the number of writers (docs/scaling.md). So the statements commit without
one, and their callers `post` what they changed here instead: `Wakeups` sends what was posted in
one short transaction of its own, after those commits, at most one per INTERVAL_SECONDS (the
first after a quiet interval at once, the rest together in the next). That transaction writes
no row and does not wait for its WAL flush (synchronous_commit off): the lock is held for the
commit in memory only. Each process makes at most 100 notifying commits a second, whatever its
load; a wake-up reaches another process up to one interval later than a NOTIFY in the commit
would have. This process's waiters on a run's outcome or a delivery do not wait for it: the
code that commits the change wakes them directly (app/engine/listener.py: `committing`,
`wake`); those following a run's steps here hear the NOTIFY as the others do.

Notifications stay hints (app/engine/listener.py): whoever is woken reads its rows again. A
wake-up lost to a crash between a commit and its batch, or to a failed send, is one the fallback
poll gives a little later; the rows it points at are committed either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from app.db.gateway import Database
from app.db.scope import KEY_CHANNEL, STEPS_TOPIC, WORK_CHANNEL

logger = logging.getLogger(__name__)

# At most one send per interval: the first wake-up after a quiet interval goes at once, those
# posted within one interval of a send wait for the next one together.
INTERVAL_SECONDS = 0.01
SEND_TIMEOUT_SECONDS = 2.0


class Wakeups:
    """The wake-ups this process's commits owe the others: posted after each commit, coalesced
    (each channel and payload once a batch), sent by one task at a time."""

    def __init__(self, database: Database, *, interval_seconds: float = INTERVAL_SECONDS) -> None:
        self._db = database
        self._interval_seconds = interval_seconds
        self._pending: dict[tuple[str, str], None] = {}  # insertion-ordered set
        self._sending: asyncio.Task[None] | None = None
        self._last_sent = float("-inf")  # the event loop's time of the last send
        self._batch_hooks: list[Callable[[int, bool], None]] = []
        database.on_close(self.flush)  # none is sent on a connection opened after the close

    def on_batch(self, hook: Callable[[int, bool], None]) -> None:
        """Call `hook` with each batch's size and whether it was sent (a metric)."""
        self._batch_hooks.append(hook)

    def post(self, channel: str, payload: str) -> None:
        """Owe a NOTIFY on `channel` with `payload`, for a change already committed."""
        self._pending[(channel, payload)] = None
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send_pending())

    def key(self, key: str, subscription: str | None = None) -> None:
        """The workflow `key` changed (or only its delivery `subscription`)."""
        self.post(KEY_CHANNEL, key if subscription is None else f"{key} {subscription}")

    def keys(self, keys: Iterable[tuple[str, str]]) -> None:
        """Deliveries changed: (workflow key, subscription id) pairs."""
        for key, subscription in keys:
            self.key(key, subscription)

    def steps(self, key: str) -> None:
        """A step of the key's run began or finished."""
        self.key(key, STEPS_TOPIC)

    def work(self, what: str) -> None:
        """Claimable work may exist (`run`, `delivery`, `released`)."""
        self.post(WORK_CHANNEL, what)

    def completed(self, key: str, *, leased: int, room: int) -> None:
        """A promise of `key` completed and released its waiting subscribers, `room` of them
        leasable here, `leased` leased: when the room was filled, more may wait for any worker
        (the statement knows, but does not say: its function notified when more did; a caller
        that wants no needless wake-up leaves room for one more than it expects)."""
        self.key(key)
        if leased >= room:
            self.work("delivery")

    async def flush(self) -> None:
        """Until everything posted so far is sent (or dropped): at shutdown, and in tests."""
        while self._sending is not None:
            await asyncio.shield(self._sending)

    async def _send_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                # At most one send per interval: what is posted meanwhile joins the batch.
                rest = self._last_sent + self._interval_seconds - loop.time()
                if rest > 0:
                    await asyncio.sleep(rest)
                self._last_sent = loop.time()
                batch, self._pending = list(self._pending), {}
                sent = await self._send(batch)
                for hook in self._batch_hooks:
                    hook(len(batch), sent)
        finally:
            self._sending = None

    async def _send(self, batch: list[tuple[str, str]]) -> bool:
        try:
            # A send stuck on a half-open connection must not hold every later wake-up.
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await self._db.fetchval(
                    "send_wakeups",
                    channels=[channel for channel, _ in batch],
                    payloads=[payload for _, payload in batch],
                )
        except Exception as exc:
            # An outage, most likely: every replica's listener reconnects and re-checks all its
            # waiters then, and the fallback poll bounds the delay meanwhile.
            logger.warning(
                "%d wake-ups not sent (%s: %s); the fallback poll stands in",
                len(batch),
                type(exc).__name__,
                exc,
            )
            return False
        return True
