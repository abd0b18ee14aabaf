"""What one workflow and one agent step cost Postgres (docs/scaling.md):

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.run capacity capacity-agent

`capacity`: n workflows, each an email subscriber then `run/send` (the one-call run), `in_flight`
at a time. `capacity-agent`: the `agent` scenario (bench/agent.py, 11 steps a run), smaller.
Beside each, read from Postgres: the WAL written (`pg_current_wal_lsn()` before and after; it
is the server's, so other databases' writes meanwhile count too: take the least of a few runs),
the CPU of the benchmark database's own backends (sampled by pid from pg_stat_activity, so that
other work on the server does not count), the notifications sent on the service's channels (a
LISTEN beside the service; one commit's NOTIFYs arrive as several), and for `capacity` the
service's statements (`agent_notify_db_statements_total`) and the database's committed
transactions (`pg_stat_database.xact_commit`, start-up and shutdown included).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psutil

from app.db.connection import asyncpg_dsn
from app.db.scope import FLOW_CHANNEL, KEY_CHANNEL, WORK_CHANNEL
from bench.agent import _sent, _since, _statements, agent
from bench.harness import Bench, client, gather_limited, ok, postgres_cpu_seconds

WATCHER = "agent-notify-capacity"  # bench/agent.py's settling leaves this session out


@dataclass
class Watch:
    wal_bytes: int = 0
    notifications: int = 0
    backend_cpu_s: float = 0.0
    all_postgres_cpu_s: float = 0.0
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)

    def per(self, count: int, prefix: str) -> dict[str, float]:
        return {
            f"wal_bytes_per_{prefix}": round(self.wal_bytes / count),
            f"notifications_per_{prefix}": round(self.notifications / count, 2),
            f"backend_cpu_ms_per_{prefix}": round(self.backend_cpu_s * 1000 / count, 3),
            f"all_postgres_cpu_ms_per_{prefix}": round(self.all_postgres_cpu_s * 1000 / count, 3),
        }


@asynccontextmanager
async def watched(database_url: str) -> AsyncIterator[Watch]:
    """Postgres' side of what runs inside: WAL, notifications and the database's backend CPU."""
    watch = Watch()
    connection = await asyncpg.connect(
        asyncpg_dsn(database_url), server_settings={"application_name": WATCHER}
    )

    def heard(*_args: object) -> None:
        watch.notifications += 1

    for channel in (KEY_CHANNEL, WORK_CHANNEL, FLOW_CHANNEL):
        await connection.add_listener(channel, heard)

    async def sample() -> None:
        pids = await connection.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        for row in pids:
            with suppress(psutil.Error):
                times = psutil.Process(row["pid"]).cpu_times()
                watch._first.setdefault(row["pid"], times.user + times.system)
                watch._last[row["pid"]] = times.user + times.system

    async def sampling() -> None:
        while True:
            await sample()
            await asyncio.sleep(0.2)

    lsn = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"
    wal_before = await connection.fetchval(lsn)
    all_before = postgres_cpu_seconds()
    sampler = asyncio.create_task(sampling())
    try:
        yield watch
    finally:
        sampler.cancel()
        with suppress(asyncio.CancelledError):
            await sampler
        watch.wal_bytes = int(await connection.fetchval(lsn) - wal_before)
        watch.all_postgres_cpu_s = postgres_cpu_seconds() - all_before
        watch.backend_cpu_s = sum(watch._last[pid] - watch._first[pid] for pid in watch._last)
        await asyncio.sleep(0.2)  # the last notifications
        await connection.close()


async def capacity(bench: Bench, n: int = 300, in_flight: int = 16) -> dict[str, Any]:
    await bench.reset()
    _source, commits_before = await _statements(bench.database_url)
    async with (
        watched(bench.database_url) as watch,
        bench.services() as [service],
        client(service.base_url, in_flight) as http,
    ):
        sent_before = await _sent(http)
        started = time.monotonic()

        async def one(i: int) -> None:
            await ok(http.post(f"/workflows/c{i}/on_notify/send", json=f"c{i}@example.com"))
            await ok(http.post(f"/workflows/c{i}/run/send", json=f"capacity {i}"))

        await gather_limited(n, in_flight, one)
        arrivals = await bench.peers.wait_for_emails(n, timeout=300)
        elapsed = max(a[3] for a in arrivals) - started
        sent, notifying = _since(sent_before, await _sent(http))
    _source, commits_after = await _statements(bench.database_url, settled=True)
    return {
        "scenario": "capacity",
        "workflows": n,
        "in_flight": in_flight,
        "workflows_per_s": round(n / elapsed, 1),
        "statements_per_workflow": round(sent / n, 2),
        "notifying_commits_per_workflow": round(notifying / n, 2),
        "commits_per_workflow": round((commits_after - commits_before) / n, 2),
        **watch.per(n, "workflow"),
    }


async def capacity_agent(bench: Bench, n: int = 100, in_flight: int = 16) -> dict[str, Any]:
    async with watched(bench.database_url) as watch:
        figures = await agent(bench, n=n, in_flight=in_flight)
    return {**figures, "scenario": "capacity-agent", **watch.per(figures["steps"], "step")}


CAPACITY_SCENARIOS = {"capacity": capacity, "capacity-agent": capacity_agent}
