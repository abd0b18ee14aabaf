"""The process's one LISTEN connection: reconnects, keeps alive, fans out to in-memory waiters.

Notifications are hints. A waiter registers, then reads its row, then waits; after every wake-up
it reads the row again. When the connection comes back after a loss, every waiter and worker is
woken, because anything notified meanwhile was missed.

It is a plain asyncpg connection, not one of the pool's: receiving notifications needs the
driver's own API. It runs LISTEN and a keep-alive, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

import asyncpg

from app.db.rows import WorkflowRow
from app.db.scope import FLOW_CHANNEL, KEY_CHANNEL, STEPS_TOPIC, WORK_CHANNEL

logger = logging.getLogger(__name__)


class Wakeup(asyncio.Event):
    """A waiter's event. `finished` is the finished workflow's row when this process committed
    the finish itself and handed the row over (it need not be read back); else None."""

    finished: WorkflowRow | None = None


class Handover:
    """What a local commit hands its key's waiters: the finished row, if it finished the run."""

    finished: WorkflowRow | None = None


class Listener:
    def __init__(
        self,
        dsn: str,
        *,
        keepalive_seconds: float = 5.0,
        reconnect_max_seconds: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._keepalive_seconds = keepalive_seconds
        self._reconnect_max_seconds = reconnect_max_seconds
        # workflow key -> subscription id (None: the workflow itself; STEPS_TOPIC: its run's
        # steps) -> waiting events
        self._waiters: dict[str, dict[str | None, set[Wakeup]]] = {}
        # Keys this process is committing a change to, with how many commits are under way.
        self._committing: dict[str, int] = {}
        self._work_callbacks: list[Callable[[], None]] = []
        self._flow_callbacks: list[Callable[[str], None]] = []
        self._connected_hooks: list[Callable[[], Awaitable[None]]] = []
        self._reconnected_callbacks: list[Callable[[], None]] = []
        self._connected = asyncio.Event()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def on_connected(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Await `hook` each time the connection is (re)established, before waking anyone."""
        self._connected_hooks.append(hook)

    def on_reconnected(self, callback: Callable[[], None]) -> None:
        self._reconnected_callbacks.append(callback)

    def on_work(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever claimable work may exist (and after every reconnect)."""
        self._work_callbacks.append(callback)

    def on_flow(self, callback: Callable[[str], None]) -> None:
        """Call `callback` with each payload of the model flow channel (FLOW_CHANNEL)."""
        self._flow_callbacks.append(callback)

    @contextlib.contextmanager
    def watch(
        self, key: str, subscription: str | None = None, *, steps: bool = False
    ) -> Iterator[Wakeup]:
        """An event set whenever workflow `key` (or only its `subscription`, if given) may have
        changed, and with `steps` also when a step of its run began or finished; clear it
        before re-reading the rows."""
        event = Wakeup()
        chosen = [subscription, STEPS_TOPIC] if steps else [subscription]
        topics = self._waiters.setdefault(key, {})
        for topic in chosen:
            topics.setdefault(topic, set()).add(event)
        try:
            yield event
        finally:
            for topic in chosen:
                waiters = topics.get(topic, set())
                waiters.discard(event)
                if not waiters:
                    topics.pop(topic, None)
            if not topics:
                self._waiters.pop(key, None)

    def wake(
        self, key: str, subscription: str | None = None, *, finished: WorkflowRow | None = None
    ) -> None:
        """Wake this process's waiters on `key`: all of them for a change of the workflow, those
        of the workflow and of that one subscription for a delivery change. Called for
        notifications, and after a local commit to skip the round trip; a local commit that
        finished the workflow hands its row over (`finished`), which saves each waiter a read."""
        topics = self._waiters.get(key)
        if not topics:
            return
        if subscription is None:
            chosen = list(topics.values())
        elif subscription == STEPS_TOPIC:
            # A step's statement changed no workflow or subscription row: the runner's watch
            # (and any waiter on the outcome) has nothing to re-read.
            chosen = [topics.get(STEPS_TOPIC, set())]
        else:
            chosen = [topics.get(None, set()), topics.get(subscription, set())]
        for waiters in chosen:
            for event in waiters:
                if finished is not None:
                    event.finished = finished
                event.set()

    @contextlib.contextmanager
    def committing(self, key: str) -> Iterator[Handover]:
        """Around this process's own commit of a change to `key`: the key's notifications are
        not passed on meanwhile, and at the end its waiters are woken once, with the finished
        row if the committer handed it over.

        Without this, a NOTIFY of the key (another replica's, or this process's own wake-up
        sent after an earlier commit) could reach the waiters before the committer gets its
        result back, and each of them would read the row again: under a burst of finishing
        runs, thousands of reads queued for the pool.
        """
        handover = Handover()
        self._committing[key] = self._committing.get(key, 0) + 1
        try:
            yield handover
        finally:
            if self._committing[key] == 1:
                del self._committing[key]
            else:
                self._committing[key] -= 1
            self.wake(key, finished=handover.finished)

    def watched_keys(self) -> list[str]:
        return list(self._waiters)

    @property
    def waiter_count(self) -> int:
        # An event watching a key's steps too is one waiter.
        return len(
            {event for topics in self._waiters.values() for w in topics.values() for event in w}
        )

    def _wake_work(self) -> None:
        for callback in self._work_callbacks:
            callback()

    def wake_all_waiters(self) -> None:
        for topics in self._waiters.values():
            for waiters in topics.values():
                for event in waiters:
                    event.set()

    def _wake_everyone(self) -> None:
        self.wake_all_waiters()
        self._wake_work()

    def _on_notification(self, _connection: object, _pid: int, channel: str, payload: str) -> None:
        if channel == KEY_CHANNEL:
            # "<key>" for a workflow change, "<key> <subscription id>" for a delivery change.
            key, _, subscription = payload.partition(" ")
            if key not in self._committing:  # else committing() wakes them all when it ends
                self.wake(key, subscription or None)
        elif channel == FLOW_CHANNEL:
            for callback in self._flow_callbacks:
                callback(payload)
        else:
            self._wake_work()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever the connection is lost."""
        backoff = 0.1
        first = True
        while True:
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=10,
                    server_settings={"application_name": "agent-notify-listener"},
                )
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                logger.warning("listener cannot connect (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._reconnect_max_seconds)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
            connected_at = asyncio.get_running_loop().time()
            try:
                await connection.add_listener(KEY_CHANNEL, self._on_notification)
                await connection.add_listener(WORK_CHANNEL, self._on_notification)
                if self._flow_callbacks:
                    await connection.add_listener(FLOW_CHANNEL, self._on_notification)
                for hook in self._connected_hooks:
                    try:
                        await hook()
                    except Exception as exc:
                        logger.warning("on reconnecting: %s: %s", type(exc).__name__, exc)
                self._connected.set()
                if not first:
                    self.reconnects += 1
                    for callback in self._reconnected_callbacks:
                        callback()
                    logger.info("listener reconnected; re-checking every waiter and worker")
                first = False
                self._wake_everyone()
                await self._keep_alive(connection, lost)
                logger.warning("listener connection lost (closed by the server)")
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("listener connection lost: %s: %s", type(exc).__name__, exc)
            finally:
                self._connected.clear()
                connection.terminate()
            # A connection that held up for a while earns a quick reconnect; one dropped at once
            # (a server accepting and closing) backs off like a refused one.
            if asyncio.get_running_loop().time() - connected_at > 30:
                backoff = 0.1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._reconnect_max_seconds)

    async def _keep_alive(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        # A dead TCP peer is only noticed when we talk: ask a trivial question now and then.
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._keepalive_seconds):
                    await lost.wait()
                return
            async with asyncio.timeout(self._keepalive_seconds):
                await connection.fetchval("SELECT 1")
