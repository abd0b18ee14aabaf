"""Benchmark scenarios, measured from the outside, each printing one JSON line of figures (and
appending it to bench/results.jsonl).

    .venv/bin/python -m bench.run                  # every scenario (~5 minutes)
    .venv/bin/python -m bench.run early late sync  # some of them
    .venv/bin/python -m bench.run many-waiters --set DB_POOL_SIZE=20   # another setting

The service runs as its own process(es) (`python -m app.cli serve`), the fake LLM and the SMTP
sink in another (bench/servers.py), and this driver in a third. Postgres is DATABASE_URL's
server when set (a fresh database is created on it), else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from app.config import Settings
from app.db import migrate
from app.db.connection import asyncpg_dsn, create_engine
from app.db.embedded import EmbeddedPostgres
from bench.agent import agent, agent_sse
from bench.approvals import approvals
from bench.capacity import CAPACITY_SCENARIOS
from bench.flow import FLOW_SCENARIOS
from bench.harness import (
    RESULTS,
    ROOT,
    WIRED,
    Bench,
    Peers,
    Response,
    client,
    cpu_seconds,
    gather_limited,
    ok,
    peers,
    postgres_cpu_seconds,
    rss_mb,
    save_samples,
    summary_ms,
)
from tests.conftest import create_database, drop_database


async def early(bench: Bench, n: int = 200) -> dict[str, Any]:
    """Subscriber first, then run/send; from sending run/send to the email at the sink."""
    await bench.reset()
    latencies = []
    async with bench.services() as [service], client(service.base_url) as http:
        for i in range(n):
            await http.post(f"/workflows/e{i}/on_notify/send", json=f"e{i}@example.com")
            seen = len(await bench.peers.arrivals())
            started = time.monotonic()
            response = await http.post(f"/workflows/e{i}/run/send", json=f"early {i}")
            assert response.status_code == 202, response.text
            [arrival] = await _next_email(bench.peers, seen)
            latencies.append(arrival[3] - started)
    save_samples("early", latencies[10:])
    return {"scenario": "early", "n": n, **summary_ms(latencies[10:])}


async def _next_email(peers: Peers, seen: int) -> list[list[Any]]:
    async with asyncio.timeout(30):
        while True:
            new = await peers.arrivals(seen, wait=5)
            if new:
                return new[:1]


async def late(bench: Bench, n: int = 200) -> dict[str, Any]:
    """The answer exists already; from sending on_notify/send to the email at the sink."""
    await bench.reset()
    latencies = []
    async with bench.services() as [service], client(service.base_url) as http:
        await gather_limited(
            n, 16, lambda i: ok(http.post(f"/workflows/l{i}/run", json=f"late {i}"))
        )
        for i in range(n):
            seen = len(await bench.peers.arrivals())
            started = time.monotonic()
            response = await http.post(f"/workflows/l{i}/on_notify/send", json=f"l{i}@example.com")
            assert response.status_code == 202, response.text
            [arrival] = await _next_email(bench.peers, seen)
            latencies.append(arrival[3] - started)
    save_samples("late", latencies[10:])
    return {"scenario": "late", "n": n, **summary_ms(latencies[10:])}


async def sync(bench: Bench, n: int = 200) -> dict[str, Any]:
    """POST run, waiting for the answer: the round trip."""
    await bench.reset()
    latencies = []
    async with bench.services() as [service], client(service.base_url) as http:
        for i in range(n):
            started = time.monotonic()
            response = await http.post(f"/workflows/s{i}/run", json=f"sync {i}")
            assert response.status_code == 200, response.text
            latencies.append(time.monotonic() - started)
    save_samples("sync", latencies[10:])
    return {"scenario": "sync", "n": n, **summary_ms(latencies[10:])}


async def throughput(
    bench: Bench, n: int = 2000, in_flight: int = 64, replicas: int = 1
) -> dict[str, Any]:
    """n workflows, each with one (early) subscriber, `in_flight` at a time, spread over the
    replicas; from the first request to the last email."""
    await bench.reset()
    async with bench.services(replicas) as services:
        clients = [client(s.base_url, in_flight) for s in services]
        cpu_before = [cpu_seconds(s) for s in services]
        postgres_before, machine_before = postgres_cpu_seconds(), psutil.cpu_times()
        started = time.monotonic()

        async def one(i: int) -> None:
            http = clients[i % len(clients)]
            await ok(http.post(f"/workflows/t{i}/on_notify/send", json=f"t{i}@example.com"))
            await ok(http.post(f"/workflows/t{i}/run/send", json=f"throughput {i}"))

        await gather_limited(n, in_flight, one)
        arrivals = await bench.peers.wait_for_emails(n, timeout=600)
        elapsed = max(a[3] for a in arrivals) - started
        cpu = sum(cpu_seconds(s) - b for s, b in zip(services, cpu_before, strict=True))
        postgres = postgres_cpu_seconds() - postgres_before
        machine = psutil.cpu_times()
        idle = (machine.idle - machine_before.idle) / (psutil.cpu_count() * elapsed)
        for http in clients:
            await http.aclose()
        rss = max(rss_mb(s) for s in services)
    duplicates = len(arrivals) - len({a[2] for a in arrivals})
    return {
        "scenario": "throughput" if replicas == 1 else "replicas",
        "replicas": replicas,
        "workflows": n,
        "in_flight": in_flight,
        "workflows_per_s": round(n / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "failed": n - len({a[2] for a in arrivals}),
        "duplicates": duplicates,
        "service_cpu_ms_per_workflow": round(cpu * 1000 / n, 2),
        # Where the bottleneck is: Postgres' share, and what the machine had left.
        "postgres_cpu_ms_per_workflow": round(postgres * 1000 / n, 2),
        "machine_idle_share": round(max(0.0, idle), 2),
        "service_rss_mb": round(rss, 1),
    }


async def sweep(bench: Bench) -> dict[str, Any]:
    """Throughput against the number of workflows in flight (1,000 workflows at each)."""
    points = []
    for in_flight in (1, 4, 16, 64, 256):
        figures = await throughput(bench, n=1000, in_flight=in_flight)
        points.append({k: figures[k] for k in ("in_flight", "workflows_per_s", "failed")})
    return {"scenario": "sweep", "points": points}


async def replicas(bench: Bench) -> dict[str, Any]:
    return await throughput(bench, replicas=3)


async def many_waiters(bench: Bench, n: int = 10_000, in_flight: int = 64) -> dict[str, Any]:
    """n runs held at the LLM and n subscribers waiting on them; then the answers come."""
    await bench.reset()
    await bench.peers.post("/hold")
    async with bench.services() as [service], client(service.base_url, in_flight) as http:
        await gather_limited(
            n, in_flight, lambda i: ok(http.post(f"/workflows/w{i}/run/send", json=f"w {i}"))
        )
        started = time.monotonic()
        await gather_limited(
            n,
            in_flight,
            lambda i: ok(http.post(f"/workflows/w{i}/on_notify/send", json=f"w{i}@example.com")),
        )
        accepted = time.monotonic() - started
        rss = rss_mb(service)
        connections = await bench.connections()
        cpu_before, postgres_before = cpu_seconds(service), postgres_cpu_seconds()
        peers_before = cpu_seconds(bench.peers)
        released = time.monotonic()
        await bench.peers.post("/release")
        arrivals = await bench.peers.wait_for_emails(n, timeout=600)
        delivered = max(a[3] for a in arrivals) - released
        cpu = cpu_seconds(service) - cpu_before
        postgres = postgres_cpu_seconds() - postgres_before
        peers = cpu_seconds(bench.peers) - peers_before
    return {
        "scenario": "many-waiters",
        "subscriptions": n,
        "accepted_per_s": round(n / accepted, 1),
        "service_rss_mb_while_waiting": round(rss, 1),
        "db_connections": connections,
        "db_pool_size": bench.settings().db_pool_size,
        "all_delivered_after_release_s": round(delivered, 2),
        # CPU per workflow from the release to the last email (the run, its completion, the
        # email): the service's, Postgres', and that of the peers (the LLM's answers, the SMTP
        # server), which share the machine's two cores with them.
        "release_service_cpu_ms_per_workflow": round(cpu * 1000 / n, 2),
        "release_postgres_cpu_ms_per_workflow": round(postgres * 1000 / n, 2),
        "release_peers_cpu_ms_per_workflow": round(peers * 1000 / n, 2),
    }


async def attach(bench: Bench, n: int = 5000) -> dict[str, Any]:
    """n clients attached with GET …/output to n held runs; then the answers come."""
    await bench.reset()
    await bench.peers.post("/hold")
    async with bench.services() as [service], client(service.base_url, n) as http:
        setup = client(service.base_url, 64)
        await gather_limited(
            n, 64, lambda i: ok(setup.post(f"/workflows/a{i}/run/send", json=f"a {i}"))
        )
        await setup.aclose()
        woken: dict[str, float] = {}

        async def attached(i: int) -> None:
            response = await http.get(f"/workflows/a{i}/output", params={"timeout": 600})
            assert response.status_code == 200, response.text
            woken[f"a{i}"] = time.time()

        waiters = [asyncio.create_task(attached(i)) for i in range(n)]
        async with asyncio.timeout(120):
            while True:  # every client is waiting in the service before the answers come
                metrics = (await setup_get(service.base_url, "/metrics")).text
                waiting = _metric(metrics, "agent_notify_waiters")
                if waiting >= n:
                    break
                await asyncio.sleep(0.1)
        connections = await bench.connections()
        rss = rss_mb(service)
        await bench.peers.post("/release")
        await asyncio.gather(*waiters)
    finished = await _finished_at(bench.database_url)
    # In the order the runs finished, to see where in the release the slow ones are.
    in_order = sorted(woken, key=lambda key: finished[key])
    delays = [woken[key] - finished[key].timestamp() for key in in_order]
    save_samples("attach", delays)
    return {
        "scenario": "attach",
        "clients": n,
        "db_connections_while_waiting": connections,
        "service_rss_mb_while_waiting": round(rss, 1),
        "woken_after_resolution": summary_ms(delays),
    }


async def setup_get(base_url: str, path: str) -> Response:
    async with client(base_url, 1) as http:
        return await http.get(path)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def _finished_at(database_url: str) -> dict[str, datetime]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await connection.fetch("SELECT key, finished_at FROM workflow")
        return {row["key"]: row["finished_at"] for row in rows}
    finally:
        await connection.close()


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """A fresh database on DATABASE_URL's server, else on an embedded one; dropped after."""
    embedded = None
    server_url = os.environ.get("DATABASE_URL")
    if server_url is None:
        data = Path(tempfile.mkdtemp(prefix=f"{prefix}-postgres-"))
        embedded = await asyncio.to_thread(EmbeddedPostgres.start, data)
        server_url = embedded.url
    try:
        database = f"{prefix.replace('-', '_')}_{secrets.token_hex(3)}"
        database_url = await create_database(server_url, database)
        try:
            yield database_url
        finally:
            await drop_database(server_url, database)
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def report(figures: dict[str, Any], results: Path) -> None:
    """Print the figures as one JSON line and append it to the results file."""
    line = json.dumps(figures)
    print(line, flush=True)
    with results.open("a") as file:
        file.write(line + "\n")


def _git_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout


SCENARIOS: dict[str, Callable[[Bench], Awaitable[dict[str, Any]]]] = {
    "early": early,
    "late": late,
    "sync": sync,
    "throughput": throughput,
    "many-waiters": many_waiters,
    "attach": attach,
    "replicas": replicas,
    "sweep": sweep,
    **FLOW_SCENARIOS,
    "approvals": approvals,
    "agent": agent,
    "agent-sse": agent_sse,
    **CAPACITY_SCENARIOS,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help=f"some of: {', '.join(SCENARIOS)}")
    parser.add_argument("--delay", type=float, default=0.0, help="the fake LLM's answer time")
    parser.add_argument(
        "--model",
        default="openai/fake-model",
        help="AGENT_MODEL for the service; any litellm provider that speaks to an "
        "OpenAI-compatible server (e.g. aiohttp_openai/fake-model)",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the service, as its environment variable (e.g. DB_POOL_SIZE=20); "
        "repeatable, recorded with the figures",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    chosen = args.scenarios or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    settings = {}
    for setting in args.settings:
        name, equals, value = setting.partition("=")
        if not equals or name.lower() not in Settings.model_fields:
            parser.error(f"--set {setting}: not NAME=VALUE with NAME one of the service's settings")
        if name.lower() in WIRED:
            hint = " (use --model)" if name.lower() == "agent_model" else ""
            parser.error(f"--set {setting}: the benchmark sets {name.upper()} itself{hint}")
        settings[name.lower()] = value
    try:
        Settings(**settings)
    except ValueError as exc:  # pydantic's ValidationError
        parser.error(f"--set: {exc}")
    workdir = Path(tempfile.mkdtemp(prefix="agent-notify-bench-"))
    commit = (await asyncio.to_thread(_git_commit)).strip()
    async with scratch_database("agent-notify-bench") as database_url:
        engine = create_engine(database_url, pool_size=1)
        await migrate.upgrade(engine)
        await engine.dispose()
        async with peers(args.delay) as servers:
            bench = Bench(database_url, servers, workdir, args.model, settings)
            changed = bench.changed_settings()
            for name in chosen:
                figures = await SCENARIOS[name](bench)
                figures.update(
                    when=datetime.now().isoformat(timespec="seconds"),
                    llm_delay_s=args.delay,
                    model=args.model,
                    commit=commit,
                )
                if changed:
                    figures["settings"] = changed
                report(figures, args.results)


if __name__ == "__main__":
    asyncio.run(main())
