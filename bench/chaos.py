"""Chaos run: workflows and subscribers keep coming while the service is killed (kill -9) and
restarted at random instants. Prints what was lost, duplicated or failed, and the longest delay.

    .venv/bin/python -m bench.chaos --workflows 200 --kills 10

Uses DATABASE_URL's server when set (a fresh database is created on it), else an embedded
Postgres in a temporary folder; a fake OpenAI-compatible LLM answering in 50-500 ms; an aiosmtpd
server as the mail sink; and the service itself as a child process (`python -m app.cli serve`).

Slow-SMTP mode: the sink takes every message but holds its final reply (the 250 that ends DATA)
for a share of them, longer than the service's SMTP_TIMEOUT_SECONDS:

    .venv/bin/python -m bench.chaos --workflows 200 --kills 10 --slow-smtp 0.3

Every run reports the duplicates beyond the documented window (target 0): a copy is expected only
after a process died between a copy's arrival and the next one, or once after an unknown outcome
recorded on its subscription (`outcome_unknown_at`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import secrets
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

from app.config import Settings
from app.db.connection import asyncpg_dsn
from app.db.embedded import EmbeddedPostgres
from tests.conftest import create_database, drop_database
from tests.fakes.llm import FakeLLM
from tests.fakes.smtp import Inbox
from tests.service import ServiceProcess


class SlowSmtpSink(Inbox):
    """The mail sink, recording when each copy arrived; with --slow-smtp, it holds its final
    reply to a share of the messages for `delay` seconds after storing them."""

    def __init__(self, *, share: float, delay: float, rng: random.Random) -> None:
        super().__init__()
        self.share = share
        self.delay = delay
        self._rng = rng
        self.held = 0
        # (key, recipient) -> when each copy arrived (monotonic)
        self.copies: dict[tuple[str, str], list[float]] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        message = self.messages[-1]
        pair = (str(message["X-Agent-Notify-Key"]), str(message["To"]))
        self.copies.setdefault(pair, []).append(time.monotonic())
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


def duplicates_beyond_window(
    copies: dict[tuple[str, str], list[float]],
    crashes: list[float],
    unknown: set[tuple[str, str]],
) -> int:
    """Copies the service's contract does not explain. A copy may follow another only if a
    process crashed between the two arrivals (between the server's acceptance and the `sent`
    commit), or once for a subscription whose outcome was recorded as unknown."""
    beyond = 0
    for pair, times in copies.items():
        allowance = 1 if pair in unknown else 0
        ordered = sorted(times)
        for before, after in itertools.pairwise(ordered):
            if any(before <= crash <= after for crash in crashes):
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
    kills_at: list[float] = field(default_factory=list)


async def call_until_accepted(
    client: httpx.AsyncClient, path: str, body: object, *, deadline: float
) -> None:
    """POST until the service answers 2xx: it may be dead or restarting at any moment. Every
    call here is idempotent, so a retry after a lost response is safe."""
    while time.monotonic() < deadline:
        try:
            response = await client.post(path, json=body)
            if response.status_code < 300:
                return
            if response.status_code < 500:
                raise SystemExit(f"{path}: {response.status_code} {response.text}")
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit(f"{path}: never accepted")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=2, help="per workflow")
    parser.add_argument("--kills", type=int, default=10, help="at least this many kill -9")
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
    args = parser.parse_args()
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
    )
    service = ServiceProcess(settings, workdir / "service.log")
    await service.start()
    kills = 0
    submitting = True

    async def killer() -> None:
        nonlocal kills
        while args.kills and (submitting or kills < args.kills):
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            await service.kill()
            ledger.kills_at.append(time.monotonic())
            kills += 1
            await service.start()

    async def submit(client: httpx.AsyncClient, i: int) -> None:
        key = f"chaos-{i}"
        emails = [f"user{j}-{i}@example.com" for j in range(args.subscribers)]
        # Half subscribe before the run exists, half after it was accepted.
        early, late = emails[: len(emails) // 2], emails[len(emails) // 2 :]
        for email in early:
            await call_until_accepted(
                client, f"/workflows/{key}/on_notify/send", email, deadline=deadline
            )
        await call_until_accepted(client, f"/workflows/{key}/run/send", f"q{i}", deadline=deadline)
        accepted = time.monotonic()
        for email in early:
            ledger.owed_since[(key, email)] = accepted
        for email in late:
            await call_until_accepted(
                client, f"/workflows/{key}/on_notify/send", email, deadline=deadline
            )
            ledger.owed_since[(key, email)] = time.monotonic()

    async def watch_inbox() -> None:
        seen = 0
        while True:
            await inbox.wait_for(seen + 1, timeout=args.timeout)
            for message in inbox.messages[seen:]:
                pair = (str(message["X-Agent-Notify-Key"]), str(message["To"]))
                ledger.arrived_at.setdefault(pair, time.monotonic())
            seen = len(inbox.messages)

    watcher = asyncio.create_task(watch_inbox())
    killing = asyncio.create_task(killer())
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
        limit = asyncio.Semaphore(16)

        async def paced(i: int) -> None:
            async with limit:
                await submit(client, i)

        await asyncio.gather(*(paced(i) for i in range(args.workflows)))
    submitting = False
    await killing
    owed = args.workflows * args.subscribers

    # Let it finish: every subscription sent or failed.
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
        unknown = {(row["workflow_key"], row["email"]) for row in unknown_rows}
        # Two unknown outcomes end a subscription `failed` by design (two copies went out).
        failed_unknown = sum(row["status"] == "failed" for row in unknown_rows)
    finally:
        await connection.close()
    elapsed = time.monotonic() - started
    watcher.cancel()

    received = Counter((str(m["X-Agent-Notify-Key"]), str(m["To"])) for m in inbox.messages)
    ids_per_pair: dict[tuple[str, str], set[str]] = {}
    for message in inbox.messages:
        pair = (str(message["X-Agent-Notify-Key"]), str(message["To"]))
        ids_per_pair.setdefault(pair, set()).add(str(message["Message-ID"]))
    lost = [pair for pair in ledger.owed_since if pair not in received]
    duplicates = sum(count - 1 for count in received.values())
    duplicates_with_new_id = sum(len(ids) - 1 for ids in ids_per_pair.values())
    # How long before a kill each duplicated email first arrived: duplicates come only from the
    # window between the SMTP server's acceptance and the commit that records it.
    windows = [
        min(
            (
                kill - ledger.arrived_at[pair]
                for kill in ledger.kills_at
                if kill >= ledger.arrived_at[pair]
            ),
            default=float("inf"),
        )
        for pair, count in received.items()
        if count > 1
    ]
    delays = [
        ledger.arrived_at[pair] - since
        for pair, since in ledger.owed_since.items()
        if pair in ledger.arrived_at
    ]
    print(f"workflows            {args.workflows}")
    print(f"subscriptions owed   {owed}")
    print(f"kill -9 + restart    {kills}")
    print(f"emails received      {len(inbox.messages)}")
    print(f"lost                 {len(lost)}")
    print(
        f"duplicates           {duplicates} (all with the same Message-ID: "
        f"{'yes' if duplicates_with_new_id == 0 else 'NO'})"
    )
    if windows:
        print(f"  first copy arrived {max(windows) * 1000:.0f} ms or less before a kill")
    beyond = duplicates_beyond_window(inbox.copies, ledger.kills_at, unknown)
    print(f"  beyond the window  {beyond} (target 0)")
    if args.slow_smtp:
        print(
            f"slow SMTP            {inbox.held} final replies held {args.slow_smtp_delay:g} s "
            f"(SMTP_TIMEOUT_SECONDS {args.smtp_timeout:g})"
        )
    print(f"unknown outcomes     {len(unknown)} (one re-send each allowed)")
    print(f"failed               {failed} ({failed_unknown} after two unknown outcomes)")
    print(f"LLM calls repeated   {llm_retries} (runs interrupted mid-call)")
    print(f"delay p50            {statistics.median(delays):.2f} s" if delays else "delay p50 -")
    print(f"longest delay        {max(delays):.2f} s" if delays else "longest delay -")
    print(f"elapsed              {elapsed:.1f} s")

    await service.kill()
    await inbox.stop()
    await llm.stop()
    await drop_database(server_url, database)
    if embedded is not None:
        await asyncio.to_thread(embedded.stop)
    sys.exit(1 if lost or failed - failed_unknown or duplicates_with_new_id or beyond else 0)


if __name__ == "__main__":
    asyncio.run(main())
