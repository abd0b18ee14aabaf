"""Chaos run: workflows and subscribers keep coming while the service is killed (kill -9) and
restarted, or paused (SIGSTOP, then SIGCONT) for longer than its lease, at random instants.
Prints what was lost, duplicated or failed, and the longest delay.

    .venv/bin/python -m bench.chaos --workflows 200 --kills 10
    .venv/bin/python -m bench.chaos --workflows 200 --kills 10 --pauses 5 --replicas 2

Uses DATABASE_URL's server when set (a fresh database is created on it), else an embedded
Postgres in a temporary folder; a fake OpenAI-compatible LLM answering in 50-500 ms; an aiosmtpd
server as the mail sink; and the service itself as a child process (`python -m app.cli serve`).

Slow-SMTP mode: the sink takes every message but holds its final reply (the 250 that ends DATA)
for a share of them, longer than the service's SMTP_TIMEOUT_SECONDS:

    .venv/bin/python -m bench.chaos --workflows 200 --kills 10 --slow-smtp 0.3

Every run reports the duplicates beyond the documented window (target 0). A copy is expected
only after the process that sent the one before it died (or was paused) between that copy's
arrival and the next one — the email was accepted but not yet recorded as sent —, after the
process that sent it was paused while its send was under way (the effect outlasting the lease),
or once after an unknown outcome recorded on its subscription (`outcome_unknown_at`). The sink
tells which process sent each copy by the client port of its SMTP connection.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from app.config import Settings
from app.db.connection import asyncpg_dsn
from app.db.embedded import EmbeddedPostgres
from tests.conftest import create_database, drop_database
from tests.fakes.llm import FakeLLM
from tests.fakes.smtp import Inbox
from tests.service import ServiceProcess


@dataclass(frozen=True)
class Copy:
    """One copy of an email at the sink: when its transaction began (RCPT) and when its message
    arrived (monotonic), and the pid of the process that sent it (None if it could not be told)."""

    started: float
    arrived: float
    sender: int | None


def sender_pid(peer: tuple[str, int]) -> int | None:
    """The process on this machine whose TCP socket is `peer` (the sink's client)."""
    for connection in psutil.net_connections(kind="inet"):
        if connection.laddr and tuple(connection.laddr)[:2] == tuple(peer)[:2]:
            return connection.pid
    return None


class SlowSmtpSink(Inbox):
    """The mail sink, recording each copy (see Copy); with --slow-smtp, it holds its final
    reply to a share of the messages for `delay` seconds after storing them."""

    def __init__(self, *, share: float, delay: float, rng: random.Random) -> None:
        super().__init__()
        self.share = share
        self.delay = delay
        self._rng = rng
        self.held = 0
        self.copies: dict[tuple[str, str], list[Copy]] = {}

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not hasattr(envelope, "started_at"):
            envelope.started_at = time.monotonic()
        if not hasattr(session, "sender_pid"):
            session.sender_pid = await asyncio.to_thread(sender_pid, session.peer)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        message = self.messages[-1]
        pair = (str(message["X-Agent-Notify-Key"]), str(message["To"]))
        copy = Copy(
            getattr(envelope, "started_at", time.monotonic()),
            time.monotonic(),
            getattr(session, "sender_pid", None),
        )
        self.copies.setdefault(pair, []).append(copy)
        if self.share and self._rng.random() < self.share:
            self.held += 1
            await asyncio.sleep(self.delay)
        return reply


def slow_smtp_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The service's SMTP timeouts in slow-SMTP mode (none otherwise): the held reply outlasts
    SMTP_TIMEOUT_SECONDS; SMTP_DATA_TIMEOUT_SECONDS stays the service's unless given (shorter
    than the hold, it makes unknown outcomes, each re-sent once after 2 s)."""
    if not args.slow_smtp:
        return {}
    settings: dict[str, Any] = {"smtp_timeout_seconds": args.smtp_timeout}
    if args.smtp_data_timeout is not None:
        settings["smtp_data_timeout_seconds"] = args.smtp_data_timeout
        settings["smtp_unknown_retry_seconds"] = 2.0
    return settings


@dataclass
class Events:
    """What was done to the service's processes, by pid (monotonic times)."""

    kills: list[tuple[int, float]] = field(default_factory=list)
    pauses: list[tuple[int, float, float]] = field(default_factory=list)

    def hit(self, pid: int | None, since: float, until: float) -> bool:
        """Whether process `pid` (any, if unknown) was killed or paused in [since, until]."""
        return any(
            (pid is None or killed == pid) and since <= at <= until for killed, at in self.kills
        ) or any(
            (pid is None or paused == pid) and since <= start <= until
            for paused, start, _end in self.pauses
        )


def explained(before: Copy, after: Copy, events: Events) -> bool:
    """Whether the documented window explains `after`, a copy that followed `before`."""
    return (
        # accepted, but its sender died or stopped before recording it as sent
        events.hit(before.sender, before.arrived, after.arrived)
        # its sender stopped while this send was under way: the effect outlasted the lease
        or events.hit(after.sender, after.started, after.arrived)
    )


def duplicates_beyond_window(
    copies: dict[tuple[str, str], list[Copy]], events: Events, unknown: set[tuple[str, str]]
) -> int:
    """Copies the service's contract does not explain (see the module's docstring)."""
    beyond = 0
    for pair, seen in copies.items():
        allowance = 1 if pair in unknown else 0
        ordered = sorted(seen, key=lambda copy: copy.arrived)
        for before, after in itertools.pairwise(ordered):
            if explained(before, after, events):
                continue
            if allowance:
                allowance -= 1
                continue
            beyond += 1
    return beyond


@dataclass
class Ledger:
    """What the client was promised, and when."""

    # (key, email) -> when both the run and the subscription had been accepted (monotonic)
    owed_since: dict[tuple[str, str], float] = field(default_factory=dict)
    arrived_at: dict[tuple[str, str], float] = field(default_factory=dict)


class Replicas:
    """The service's processes, and the clients that reach whichever answers."""

    def __init__(self, services: list[ServiceProcess], events: Events) -> None:
        self.services = services
        self.events = events
        self._busy = [asyncio.Lock() for _ in services]
        self._next = 0
        # Short: a paused replica must not hold a request for long.
        self.clients = [httpx.AsyncClient(base_url=s.base_url, timeout=3) for s in services]

    async def post_until_accepted(self, path: str, body: object, *, deadline: float) -> None:
        """POST to one replica after another until one answers 2xx: any may be dead, restarting
        or paused. Every call here is idempotent, so a retry after a lost response is safe."""
        while time.monotonic() < deadline:
            self._next = (self._next + 1) % len(self.clients)
            try:
                response = await self.clients[self._next].post(path, json=body)
                if response.status_code < 300:
                    return
                if response.status_code < 500:
                    raise SystemExit(f"{path}: {response.status_code} {response.text}")
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        raise SystemExit(f"{path}: never accepted")

    async def kill_one(self, rng: random.Random) -> None:
        index = rng.randrange(len(self.services))
        async with self._busy[index]:
            service = self.services[index]
            assert service.process is not None
            pid = service.process.pid
            await service.kill()
            self.events.kills.append((pid, time.monotonic()))
            await service.start()

    async def pause_one(self, rng: random.Random, seconds: float) -> None:
        index = rng.randrange(len(self.services))
        async with self._busy[index]:
            process = self.services[index].process
            assert process is not None
            process.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                await asyncio.sleep(seconds)
            finally:
                process.send_signal(signal.SIGCONT)
            self.events.pauses.append((process.pid, stopped, time.monotonic()))

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
        for service in self.services:
            await service.kill()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=2, help="per workflow")
    parser.add_argument("--kills", type=int, default=10, help="at least this many kill -9")
    parser.add_argument(
        "--pauses", type=int, default=0, help="at least this many SIGSTOP ... SIGCONT"
    )
    parser.add_argument(
        "--pause-seconds", type=float, default=5.0, help="each pause (the lease is 2 s)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="service processes")
    parser.add_argument(
        "--delivery-concurrency",
        type=int,
        default=None,
        help="DELIVERY_CONCURRENCY of each process (default: the service's)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=300, help="seconds for everything")
    parser.add_argument(
        "--slow-smtp",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="hold the final SMTP reply of this share of messages (0-1) for --slow-smtp-delay",
    )
    parser.add_argument("--slow-smtp-delay", type=float, default=3.0, help="seconds")
    parser.add_argument(
        "--smtp-timeout", type=float, default=1.0, help="SMTP_TIMEOUT_SECONDS with --slow-smtp"
    )
    parser.add_argument(
        "--smtp-data-timeout",
        type=float,
        default=None,
        help="SMTP_DATA_TIMEOUT_SECONDS with --slow-smtp (default: the service's)",
    )
    return parser.parse_args()


async def disrupt(
    replicas: Replicas, args: argparse.Namespace, rng: random.Random, submitting: asyncio.Event
) -> tuple[int, int]:
    """Kill and pause replicas at random until the submissions are in and the counts are
    reached; returns how many of each."""
    kills = pauses = 0
    while (args.kills or args.pauses) and (
        submitting.is_set() or kills < args.kills or pauses < args.pauses
    ):
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        want_pause = pauses < args.pauses and (kills >= args.kills or rng.random() < 0.4)
        if want_pause:
            await replicas.pause_one(rng, args.pause_seconds)
            pauses += 1
        elif args.kills:
            await replicas.kill_one(rng)
            kills += 1
    return kills, pauses


async def submit(
    replicas: Replicas, ledger: Ledger, i: int, subscribers: int, deadline: float
) -> None:
    key = f"chaos-{i}"
    emails = [f"user{j}-{i}@example.com" for j in range(subscribers)]
    # Half subscribe before the run exists, half after it was accepted.
    early, late = emails[: len(emails) // 2], emails[len(emails) // 2 :]
    for email in early:
        await replicas.post_until_accepted(
            f"/workflows/{key}/on_notify/send", email, deadline=deadline
        )
    await replicas.post_until_accepted(f"/workflows/{key}/run/send", f"q{i}", deadline=deadline)
    accepted = time.monotonic()
    for email in early:
        ledger.owed_since[(key, email)] = accepted
    for email in late:
        await replicas.post_until_accepted(
            f"/workflows/{key}/on_notify/send", email, deadline=deadline
        )
        ledger.owed_since[(key, email)] = time.monotonic()


@dataclass
class Outcome:
    failed: int
    failed_unknown: int
    llm_retries: int
    unknown: set[tuple[str, str]]


async def settle(database_url: str, deadline: float) -> Outcome:
    """Wait until every subscription is sent or failed; what the rows say then."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        while time.monotonic() < deadline:
            open_rows = await connection.fetchval(
                "SELECT count(*) FROM subscription WHERE status NOT IN ('sent', 'failed')"
            )
            if open_rows == 0:
                break
            await asyncio.sleep(0.2)
        failed = await connection.fetchval(
            "SELECT count(*) FROM subscription WHERE status = 'failed'"
        )
        llm_retries = await connection.fetchval("SELECT sum(attempts) - count(*) FROM workflow")
        unknown_rows = await connection.fetch(
            "SELECT workflow_key, email, status FROM subscription "
            "WHERE outcome_unknown_at IS NOT NULL"
        )
    finally:
        await connection.close()
    return Outcome(
        failed=failed,
        # Two unknown outcomes end a subscription `failed` by design (two copies went out).
        failed_unknown=sum(row["status"] == "failed" for row in unknown_rows),
        llm_retries=llm_retries,
        unknown={(row["workflow_key"], row["email"]) for row in unknown_rows},
    )


def report(
    args: argparse.Namespace,
    inbox: SlowSmtpSink,
    ledger: Ledger,
    events: Events,
    outcome: Outcome,
    elapsed: float,
) -> int:
    """Print the figures; the exit status (1 when anything was lost, failed, or duplicated
    beyond the window)."""
    received = Counter((str(m["X-Agent-Notify-Key"]), str(m["To"])) for m in inbox.messages)
    ids_per_pair: dict[tuple[str, str], set[str]] = {}
    for message in inbox.messages:
        pair = (str(message["X-Agent-Notify-Key"]), str(message["To"]))
        ids_per_pair.setdefault(pair, set()).add(str(message["Message-ID"]))
    lost = [pair for pair in ledger.owed_since if pair not in received]
    duplicates = sum(count - 1 for count in received.values())
    duplicates_with_new_id = sum(len(ids) - 1 for ids in ids_per_pair.values())
    beyond = duplicates_beyond_window(inbox.copies, events, outcome.unknown)
    unidentified = sum(copy.sender is None for seen in inbox.copies.values() for copy in seen)
    delays = [
        ledger.arrived_at[pair] - since
        for pair, since in ledger.owed_since.items()
        if pair in ledger.arrived_at
    ]
    print(f"workflows            {args.workflows} (replicas: {args.replicas})")
    print(f"subscriptions owed   {args.workflows * args.subscribers}")
    print(f"kill -9 + restart    {len(events.kills)}")
    print(f"paused               {len(events.pauses)} (each {args.pause_seconds:g} s; lease 2 s)")
    print(f"emails received      {len(inbox.messages)}")
    print(f"lost                 {len(lost)}")
    print(
        f"duplicates           {duplicates} (all with the same Message-ID: "
        f"{'yes' if duplicates_with_new_id == 0 else 'NO'})"
    )
    print(f"  beyond the window  {beyond} (target 0; {unidentified} copies of unknown sender)")
    if args.slow_smtp:
        print(
            f"slow SMTP            {inbox.held} final replies held {args.slow_smtp_delay:g} s "
            f"(SMTP_TIMEOUT_SECONDS {args.smtp_timeout:g})"
        )
    print(f"unknown outcomes     {len(outcome.unknown)} (one re-send each allowed)")
    print(
        f"failed               {outcome.failed} "
        f"({outcome.failed_unknown} after two unknown outcomes)"
    )
    print(f"LLM calls repeated   {outcome.llm_retries} (runs interrupted mid-call)")
    print(f"delay p50            {statistics.median(delays):.2f} s" if delays else "delay p50 -")
    print(f"longest delay        {max(delays):.2f} s" if delays else "longest delay -")
    print(f"elapsed              {elapsed:.1f} s")
    bad = lost or outcome.failed - outcome.failed_unknown or duplicates_with_new_id or beyond
    return 1 if bad else 0


async def main() -> None:
    args = parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="agent-notify-chaos-"))
    deadline = time.monotonic() + args.timeout

    embedded = None
    server_url = os.environ.get("DATABASE_URL")
    if server_url is None:
        embedded = await asyncio.to_thread(EmbeddedPostgres.start, workdir)
        server_url = embedded.url
    database = f"agent_notify_chaos_{secrets.token_hex(3)}"
    database_url = await create_database(server_url, database)

    llm = FakeLLM(delay=(0.05, 0.5))
    await llm.start()
    inbox = SlowSmtpSink(share=args.slow_smtp, delay=args.slow_smtp_delay, rng=rng)
    await inbox.start()
    ledger = Ledger()
    events = Events()
    settings = Settings(
        database_url=database_url,
        data_dir=workdir / "data",
        agent_model="openai/fake-model",
        agent_api_base=llm.url,
        agent_api_key="chaos",
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        lease_seconds=2.0,
        poll_interval_seconds=0.5,
        subscribe_rate_per_minute=0,
        log_level="WARNING",
        **slow_smtp_settings(args),
        **(
            {}
            if args.delivery_concurrency is None
            else {"delivery_concurrency": args.delivery_concurrency}
        ),
    )
    services = [
        ServiceProcess(settings, workdir / f"service-{i}.log") for i in range(args.replicas)
    ]
    await asyncio.gather(*(service.start() for service in services))
    replicas = Replicas(services, events)

    async def watch_inbox() -> None:
        seen = 0
        while True:
            await inbox.wait_for(seen + 1, timeout=args.timeout)
            for message in inbox.messages[seen:]:
                pair = (str(message["X-Agent-Notify-Key"]), str(message["To"]))
                ledger.arrived_at.setdefault(pair, time.monotonic())
            seen = len(inbox.messages)

    submitting = asyncio.Event()
    submitting.set()
    watcher = asyncio.create_task(watch_inbox())
    disrupting = asyncio.create_task(disrupt(replicas, args, rng, submitting))
    started = time.monotonic()
    limit = asyncio.Semaphore(16)

    async def paced(i: int) -> None:
        async with limit:
            await submit(replicas, ledger, i, args.subscribers, deadline)

    await asyncio.gather(*(paced(i) for i in range(args.workflows)))
    submitting.clear()
    await disrupting
    outcome = await settle(database_url, deadline)
    elapsed = time.monotonic() - started
    watcher.cancel()
    status = report(args, inbox, ledger, events, outcome, elapsed)

    await replicas.aclose()
    await inbox.stop()
    await llm.stop()
    await drop_database(server_url, database)
    if embedded is not None:
        await asyncio.to_thread(embedded.stop)
    sys.exit(status)


if __name__ == "__main__":
    asyncio.run(main())
