"""The straight-line floor of issue 6, to read the service's benchmark figures against.

    .venv/bin/python -m bench.floor [early] [throughput]

It is the least work any implementation must do, written directly with asyncpg, aiohttp and
aiosmtplib in one process, with no framework and no litellm: commit the accepted run, call the
LLM, commit the resolution with its NOTIFY, hand each subscriber's email to SMTP, commit it sent.
Nothing else (no retries, no crash recovery, no late subscribers): no real service can beat it.

It is measured exactly as bench/run.py measures the service: the floor runs as a child process
(`--serve`), the fake LLM and SMTP sink in bench/servers.py, the same driver logic in this
process; its CPU is the floor process's. Postgres is DATABASE_URL's server (a fresh database with
the floor's own scratch tables), else an embedded one. Figures go to bench/results.jsonl too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import asyncpg
import psutil
from aiohttp import web

from app.db.connection import asyncpg_dsn
from bench import harness, run

SCHEMA = """
CREATE TABLE run (key text PRIMARY KEY, query text NOT NULL, status text NOT NULL, output text);
CREATE TABLE subscription (
    id bigserial PRIMARY KEY, key text NOT NULL, email text NOT NULL, status text NOT NULL
);
CREATE INDEX ON subscription (key) WHERE status = 'waiting';
"""

ACCEPT = "INSERT INTO run (key, query, status) VALUES ($1, $2, 'accepted')"
SUBSCRIBE = "INSERT INTO subscription (key, email, status) VALUES ($1, $2, 'waiting') RETURNING id"
SENT = "UPDATE subscription SET status = 'sent' WHERE id = $1"
# One statement, so one transaction and one round trip: the run's answer, its NOTIFY, and its
# waiting subscribers made ready (returned, to be emailed).
RESOLVE = """
WITH resolved AS (
    UPDATE run SET status = 'succeeded', output = $2 WHERE key = $1
    RETURNING pg_notify('run_resolved', key)
)
UPDATE subscription SET status = 'ready' WHERE key = $1 AND status = 'waiting'
RETURNING id, email
"""


# -- the floor (the child process) ----------------------------------------------------------


async def serve(dsn: str, llm_url: str, smtp_port: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    session = aiohttp.ClientSession()
    idle: list[aiosmtplib.SMTP] = []  # SMTP connections kept for the next emails
    tasks: set[asyncio.Task[None]] = set()

    async def email(key: str, subscription: asyncpg.Record, output: str) -> None:
        message = EmailMessage()
        message["From"] = "floor@example.com"
        message["To"] = subscription["email"]
        message["Message-ID"] = f"<{subscription['id']}@floor.invalid>"
        message["Subject"] = f"Your agent task {key} is ready"
        message["X-Agent-Notify-Key"] = key
        message.set_content(output + "\n")
        if idle:
            smtp = idle.pop()
        else:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, local_hostname="floor")
            await smtp.connect()
        await smtp.sendmail("floor@example.com", [subscription["email"]], message.as_bytes())
        idle.append(smtp)
        await pool.execute(SENT, subscription["id"])

    async def resolve(key: str, query: str) -> None:
        body = {"model": "fake-model", "messages": [{"role": "user", "content": query}]}
        try:
            async with session.post(f"{llm_url}/chat/completions", json=body) as response:
                response.raise_for_status()
                output: str = (await response.json())["choices"][0]["message"]["content"]
            for subscription in await pool.fetch(RESOLVE, key, output):
                await email(key, subscription, output)
        except Exception as exc:  # the driver times out waiting for the email; say why
            print(f"floor: run {key}: {exc!r}", file=sys.stderr, flush=True)

    async def run_send(request: web.Request) -> web.Response:
        key, query = request.match_info["key"], await request.json()
        await pool.execute(ACCEPT, key, query)
        task = asyncio.create_task(resolve(key, query))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.json_response({"key": key, "status": "accepted"}, status=202)

    async def on_notify_send(request: web.Request) -> web.Response:
        key, address = request.match_info["key"], await request.json()
        sid = await pool.fetchval(SUBSCRIBE, key, address)
        return web.json_response({"id": sid, "key": key, "email": address, "status": "waiting"})

    app = web.Application()
    app.router.add_post("/workflows/{key}/run/send", run_send)
    app.router.add_post("/workflows/{key}/on_notify/send", on_notify_send)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    await asyncio.Event().wait()


# -- the driver (bench/run.py's early and throughput, against the floor) --------------------


async def execute(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@asynccontextmanager
async def floor(dsn: str, servers: harness.Peers) -> AsyncIterator[tuple[str, psutil.Process]]:
    """A fresh floor process over emptied tables and sink: (its base URL, its process)."""
    await execute(dsn, "TRUNCATE run, subscription")
    await servers.post("/reset")
    command = ["-m", "bench.floor", "--serve", dsn, servers.llm_url, str(servers.smtp_port)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, cwd=harness.ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        port = json.loads(await process.stdout.readline())["port"]
        yield f"http://127.0.0.1:{port}", psutil.Process(process.pid)
    finally:
        process.kill()
        await process.wait()


async def early(dsn: str, servers: harness.Peers, n: int = 200) -> dict[str, Any]:
    """Subscriber first, then run/send; from sending run/send to the email at the sink."""
    latencies = []
    async with floor(dsn, servers) as (base_url, _), harness.client(base_url) as http:
        for i in range(n):
            await http.post(f"/workflows/e{i}/on_notify/send", json=f"e{i}@example.com")
            seen = len(await servers.arrivals())
            started = time.monotonic()
            response = await http.post(f"/workflows/e{i}/run/send", json=f"early {i}")
            assert response.status_code == 202, response.text
            [arrival] = await run._next_email(servers, seen)
            latencies.append(arrival[3] - started)
    return {"scenario": "floor-early", "n": n, **harness.summary_ms(latencies[10:])}


async def throughput(
    dsn: str, servers: harness.Peers, n: int = 2000, in_flight: int = 64
) -> dict[str, Any]:
    """n workflows, each with one (early) subscriber, `in_flight` at a time; from the first
    request to the last email."""
    async with (
        floor(dsn, servers) as (base_url, process),
        harness.client(base_url, in_flight) as http,
    ):
        cpu_before = sum(process.cpu_times()[:2])
        started = time.monotonic()

        async def one(i: int) -> None:
            await harness.ok(http.post(f"/workflows/t{i}/on_notify/send", json=f"t{i}@example.com"))
            await harness.ok(http.post(f"/workflows/t{i}/run/send", json=f"throughput {i}"))

        await harness.gather_limited(n, in_flight, one)
        arrivals = await servers.wait_for_emails(n, timeout=600)
        elapsed = max(a[3] for a in arrivals) - started
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        rss = process.memory_info().rss / 2**20
    delivered = len({a[2] for a in arrivals})
    return {
        "scenario": "floor-throughput",
        "workflows": n,
        "in_flight": in_flight,
        "workflows_per_s": round(n / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "failed": n - delivered,
        "duplicates": len(arrivals) - delivered,
        "floor_cpu_ms_per_workflow": round(cpu * 1000 / n, 2),
        "floor_rss_mb": round(rss, 1),
    }


SCENARIOS = {"early": early, "throughput": throughput}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help=f"some of: {', '.join(SCENARIOS)}")
    parser.add_argument("--results", type=Path, default=harness.RESULTS)
    args = parser.parse_args()
    chosen = args.scenarios or list(SCENARIOS)
    if unknown := set(chosen) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    commit = (await asyncio.to_thread(run._git_commit)).strip()
    async with run.scratch_database("agent-notify-floor") as database_url:
        dsn = asyncpg_dsn(database_url)
        await execute(dsn, SCHEMA)
        async with harness.peers(0.0) as servers:
            for name in chosen:
                figures = await SCENARIOS[name](dsn, servers)
                figures.update(when=datetime.now().isoformat(timespec="seconds"), commit=commit)
                run.report(figures, args.results)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        asyncio.run(main())
