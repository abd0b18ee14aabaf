"""The `agent` scenario: multi-step runs — model turns from the fake LLM, tool calls to a real
MCP server (the SDK's, over streamable HTTP) that answers at once — `in_flight` at a time, each
a sync `POST /workflows/{key}/run`. The MCP server answers each call with a JSON body
(`agent-sse`: with an SSE stream, its default: the SDK's client closes such a stream before its
end, which discards the connection, so each call there opens a TCP connection at both ends —
modelcontextprotocol/python-sdk#3281). Reports steps/s, the service's CPU per step and Postgres'
statements per step, and the CPU per step of every other process of the scenario (Postgres,
the fake LLM's process, the MCP server, this driver) with the share of the machine left idle:
on two cores they compete with the service, so the figure is the service's only when they
leave it a core.

Statements per step: those the service sent while the runs ran (its
`agent_notify_db_statements_total`; polls and lease renewals included). Postgres' own count
beside it: by pg_stat_statements when the server loads it, else the database's committed
transactions (pg_stat_database.xact_commit), from before the service starts to after it exits
(its backends flush their counts then). xact_commit also counts the transaction in which each
LISTENing backend reads the notification queue after a NOTIFY (Postgres 15 reads it in one).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import asyncpg
import psutil

from app.db.connection import asyncpg_dsn
from tests.fakes.mcp_server import McpHttpProcess
from tests.helpers import eventually, samples
from tests.service import ServiceProcess

if TYPE_CHECKING:
    from bench.harness import Bench, Client

PREFIX = "agent run "
TOOL = "bench__add"  # the MCP server `bench`, its tool `add`


async def agent(
    bench: Bench, n: int = 400, in_flight: int = 64, calls: int = 5, *, sse: bool = False
) -> dict[str, Any]:
    from bench.harness import client, cpu_seconds, gather_limited, ok, postgres_cpu_seconds

    driver = psutil.Process()

    await bench.reset()
    await bench.peers.control.post("/agent", json={"prefix": PREFIX, "tool": TOOL, "calls": calls})
    mcp = McpHttpProcess(json_response=not sse)
    await asyncio.to_thread(mcp.start)
    config = json.dumps({"mcpServers": {"bench": {"url": mcp.url}}})
    service = ServiceProcess(
        bench.settings(), bench.workdir / "service-agent.log", env={"AGENT_MCP_CONFIG": config}
    )
    try:
        source, before = await _statements(bench.database_url)
        await service.start()
        try:

            def readings() -> dict[str, float]:
                times = driver.cpu_times()
                return {
                    "service": cpu_seconds(service),
                    "postgres": postgres_cpu_seconds(),
                    "llm_and_smtp": cpu_seconds(bench.peers),
                    "mcp_server": cpu_seconds(mcp),
                    "driver": times.user + times.system,
                    "idle": psutil.cpu_times().idle,
                }

            before_run = readings()
            async with client(service.base_url, in_flight) as http:
                sent_before = await _sent(http)
                started = time.monotonic()

                async def one(i: int) -> None:
                    await ok(http.post(f"/workflows/a{i}/run", json=f"{PREFIX}{i}"))

                await gather_limited(n, in_flight, one)
                elapsed = time.monotonic() - started
                sent, notifying = _since(sent_before, await _sent(http))
            used = {name: value - before_run[name] for name, value in readings().items()}
        finally:
            await service.terminate(timeout=60)
        _source, after = await _statements(bench.database_url, settled=True)
        steps, calls_made = await _steps(bench.database_url)
    finally:
        await asyncio.to_thread(mcp.kill)
    expected = n * (2 * calls + 1)
    return {
        "scenario": "agent-sse" if sse else "agent",
        "runs": n,
        "tool_calls_per_run": calls,
        "in_flight": in_flight,
        "steps": steps,
        "missing_steps": expected - steps,
        "tool_calls": calls_made,
        "steps_per_s": round(steps / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        **{
            f"{name}_cpu_ms_per_step": round(used[name] * 1000 / steps, 3)
            for name in ("service", "postgres", "llm_and_smtp", "mcp_server", "driver")
        },
        "machine_idle_share": round(max(0.0, used["idle"] / (psutil.cpu_count() * elapsed)), 2),
        "statements_per_step": round(sent / steps, 3),
        "notifying_commits_per_step": round(notifying / steps, 3),
        "postgres_count_per_step": round((after - before) / steps, 3),
        "postgres_counted_by": source,
    }


async def agent_sse(bench: Bench) -> dict[str, Any]:
    """The `agent` scenario with an MCP server that answers with SSE streams."""
    return await agent(bench, sse=True)


async def _sent(http: Client) -> tuple[int, int]:
    """The statements the service has sent so far, and its notifying commits (the wake-ups'
    transactions), from its /metrics."""
    response = await http.get("/metrics")
    figures = samples(response.text)
    return (
        int(figures[("agent_notify_db_statements_total", ())]),
        int(figures.get(("agent_notify_wakeup_commits_total", ()), 0)),
    )


def _since(before: tuple[int, int], after: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


async def _statements(database_url: str, *, settled: bool = False) -> tuple[str, int]:
    """How the database's statements are counted, and the count so far. `settled`: first
    wait until no other session is connected to it (their counts are flushed at exit)."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        if settled:

            async def others() -> int:
                count: int = await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name <> 'agent-notify-capacity'"  # bench/capacity.py's
                )
                return count

            await eventually(others, lambda count: count == 0, timeout=60, interval=0.1)
        try:
            calls = await connection.fetchval(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return "pg_stat_statements", int(calls)
        except asyncpg.PostgresError:  # not installed, or not loaded by the server
            pass
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        commits = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return "pg_stat_database.xact_commit", int(commits)
    finally:
        await connection.close()


async def _steps(database_url: str) -> tuple[int, int]:
    """The steps journaled, and how many of them were tool calls."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS steps, count(*) FILTER (WHERE kind = 'tool') AS tools FROM step"
        )
        assert row is not None
        return int(row["steps"]), int(row["tools"])
    finally:
        await connection.close()
