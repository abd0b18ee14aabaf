"""The approvals scenario: n runs waiting for a person at once, and then n decisions.

    .venv/bin/python -m bench.run approvals

Each run asks the offline model (in the service) with a query that asks for approval: it calls
request_approval, its approver is emailed (the SMTP sink counts the requests), and it waits —
`waiting`, no lease, no runner slot. With all n waiting, the figures of the process (RSS) and
of Postgres (the service's connections); then n decisions through the promise endpoint, and the
time from the first of them to the last run finished.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from app.db.connection import asyncpg_dsn
from bench.harness import Bench, client, gather_limited, ok, rss_mb


async def _count(database_url: str, status: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM workflow WHERE status = $1", status
        )
        return count
    finally:
        await connection.close()


async def _until(database_url: str, status: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await _count(database_url, status) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} workflows {status} after {timeout} s")
        await _pause()


async def _pause() -> None:
    await asyncio.sleep(0.5)


async def approvals(bench: Bench, n: int = 10_000, in_flight: int = 64) -> dict[str, Any]:
    await bench.reset()
    # The offline model asks for approval when the query says so.
    async with (
        bench.services(agent_model=None, agent_api_base=None) as [service],
        client(service.base_url, in_flight) as http,
    ):
        started = time.monotonic()
        await gather_limited(
            n,
            in_flight,
            lambda i: ok(
                http.post(
                    f"/workflows/a{i}/run/send",
                    json={"query": f"task {i}, with approval", "approvers": [f"a{i}@example.com"]},
                )
            ),
        )
        await _until(bench.database_url, "waiting", n, timeout=1200)
        all_waiting = time.monotonic() - started
        await bench.peers.wait_for_emails(n, timeout=600)
        rss = rss_mb(service)
        connections = await bench.connections()
        inflight_runs = await _count(bench.database_url, "running")
        decided = time.monotonic()
        await gather_limited(
            n,
            in_flight,
            lambda i: ok(
                http.post(
                    f"/workflows/a{i}/promises/approval-1/resolve",
                    json={"value": {"approved": True, "by": "bench"}},
                )
            ),
        )
        decisions = time.monotonic() - decided
        await _until(bench.database_url, "succeeded", n, timeout=1200)
        finished = time.monotonic() - decided
    return {
        "scenario": "approvals",
        "runs": n,
        "agent_model": "the offline model (in the service)",
        "all_waiting_after_s": round(all_waiting, 1),
        "service_rss_mb_while_waiting": round(rss, 1),
        "db_connections_while_waiting": connections,
        "db_pool_size": bench.settings().db_pool_size,
        "runs_running_while_waiting": inflight_runs,
        "decisions_posted_s": round(decisions, 1),
        "decisions_to_all_finished_s": round(finished, 1),
        "finished_per_s": round(n / finished, 1),
    }
