"""Wake-ups for every LISTENing process, sent after the commits that call for them.

A NOTIFY inside a writing transaction makes its commit take Postgres' one notify lock (on
"database 0", for the whole server) and hold it through the commit's WAL flush: notifying
commits go one flush at a time, a ceiling of about a thousand a second on this project's test
machine whatever the number of writers (docs/scaling.md). So the statements commit without
one, and their callers `post` what they changed here instead: `Wakeups` sends what was posted in
one short transaction of its own, after those commits, with everything posted while it was
sending in the next one. That transaction writes no row and does not wait for its WAL flush
(synchronous_commit off): the lock is held for the commit in memory only.

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


class Wakeups:
    """The wake-ups this process's commits owe the others: posted after each commit, coalesced
    (each channel and payload once a batch), sent by one task at a time."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._pending: dict[tuple[str, str], None] = {}  # insertion-ordered set
        self._sending: asyncio.Task[None] | None = None
        self._batch_hooks: list[Callable[[int, bool], None]] = []

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

    def released(self, deliveries: int, room: int) -> None:
        """A promise completed released its waiting subscribers, `room` of them leasable here,
        `deliveries` leased: when the room was filled, more may wait for any worker."""
        if deliveries >= room:
            self.work("delivery")

    async def flush(self) -> None:
        """Until everything posted so far is sent (or dropped): at shutdown, and in tests."""
        while self._sending is not None:
            await asyncio.shield(self._sending)

    async def _send_pending(self) -> None:
        try:
            while self._pending:
                batch, self._pending = list(self._pending), {}
                try:
                    await self._db.fetchval(
                        "send_wakeups",
                        channels=[channel for channel, _ in batch],
                        payloads=[payload for _, payload in batch],
                    )
                except Exception as exc:
                    # An outage, most likely: every replica's listener reconnects and re-checks
                    # all its waiters then, and the fallback poll bounds the delay meanwhile.
                    sent = False
                    logger.warning(
                        "%d wake-ups not sent (%s: %s); the fallback poll stands in",
                        len(batch),
                        type(exc).__name__,
                        exc,
                    )
                else:
                    sent = True
                for hook in self._batch_hooks:
                    hook(len(batch), sent)
        finally:
            self._sending = None
