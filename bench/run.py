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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import psutil

from app.config import Settings
from app.db import migrate
from app.db.connection import asyncpg_dsn, create_engine
from app.db.embedded import EmbeddedPostgres
from app.db.models import Base
from bench.agent import agent
from bench.flow import FLOW_SCENARIOS
from tests.conftest import create_database, drop_database
from tests.service import ServiceProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.jsonl"
# Every table of work, emptied between scenarios: all of the schema's but the signing key's.
WORK_TABLES = ", ".join(
    table.name for table in Base.metadata.sorted_tables if table.name != "signing_key"
)


SAMPLES = ROOT / "bench" / "samples"


def save_samples(scenario: str, seconds: list[float]) -> None:
    """Every latency of the scenario's last run, for bench/plot.py (bench/samples/, ignored)."""
    SAMPLES.mkdir(exist_ok=True)
    (SAMPLES / f"{scenario}.json").write_text(json.dumps([round(s * 1000, 3) for s in seconds]))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p90_ms": round(percentile(values, 90) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


@dataclass
class Peers:
    """bench/servers.py in its own process."""

    process: asyncio.subprocess.Process
    llm_url: str
    smtp_port: int
    control: httpx.AsyncClient

    async def arrivals(self, since: int = 0, wait: float = 0) -> list[list[Any]]:
        """The emails from the `since`-th on; with `wait`, long-polls for the next one."""
        response = await self.control.get(
            "/arrivals", params={"since": since, "wait": wait}, timeout=wait + 30
        )
        result: list[list[Any]] = response.json()
        return result

    async def wait_for_emails(self, count: int, timeout: float = 300) -> list[list[Any]]:
        seen: list[list[Any]] = []
        async with asyncio.timeout(timeout):
            while len(seen) < count:
                await asyncio.sleep(0.05)  # a batch per request, not one request per email
                seen += await self.arrivals(len(seen), wait=5)
        return seen

    async def post(self, path: str) -> None:
        await self.control.post(path)


@asynccontextmanager
async def peers(delay: float) -> AsyncIterator[Peers]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.servers",
        "--delay",
        str(delay),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    ports = json.loads(await process.stdout.readline())
    control = httpx.AsyncClient(base_url=ports["control_url"], timeout=30)
    try:
        yield Peers(process, ports["llm_url"], ports["smtp_port"], control)
    finally:
        await control.aclose()
        process.kill()
        await process.wait()


# Settings that connect the service to the benchmark's database, peers and driver, or that the
# scenarios need as they are: --set cannot change them (the model has --model).
WIRED = {
    "host",
    "port",
    "database_url",
    "data_dir",
    "outbox_dir",
    "agent_model",
    "agent_api_base",
    "agent_api_key",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "smtp_password",
    "smtp_starttls",
    "smtp_tls",
    "api_tokens",
    "subscribe_rate_per_minute",
    "max_subscriptions_per_workflow",
}


@dataclass
class Bench:
    database_url: str
    peers: Peers
    workdir: Path
    model: str = "openai/fake-model"
    # The service's settings given with --set (field names; none of WIRED).
    chosen: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        values = self._own_settings()
        values.update(self.chosen)
        values.update(overrides)
        return Settings(**values)

    def _own_settings(self) -> dict[str, Any]:
        return {
            "database_url": self.database_url,
            "data_dir": self.workdir / "data",
            "agent_model": self.model,
            "agent_api_base": self.peers.llm_url,
            "agent_api_key": "bench",
            "smtp_host": "127.0.0.1",
            "smtp_port": self.peers.smtp_port,
            "log_level": "WARNING",
            "subscribe_rate_per_minute": 0,
            "max_subscriptions_per_workflow": 100_000,
        }

    def changed_settings(self) -> dict[str, str]:
        """The service's settings that differ from what the benchmark gives (its own values,
        else the defaults), from --set or the environment (AGENT_LEAN_CALLS=false, say), but
        for those it wires up itself."""
        own = self._own_settings()
        baseline = {
            name: info.get_default(call_default_factory=True)
            for name, info in Settings.model_fields.items()
        }
        baseline.update(Settings(**own).model_dump(include=set(own)))
        values = self.settings().model_dump(include=set(Settings.model_fields) - WIRED)
        return {name: str(value) for name, value in values.items() if value != baseline[name]}

    @asynccontextmanager
    async def services(
        self, count: int = 1, **overrides: Any
    ) -> AsyncIterator[list[ServiceProcess]]:
        started = [
            ServiceProcess(self.settings(**overrides), self.workdir / f"service-{i}.log")
            for i in range(count)
        ]
        try:
            await asyncio.gather(*(service.start() for service in started))
            yield started
        finally:
            for service in started:
                await service.terminate(timeout=60)

    async def reset(self) -> None:
        """Empty every table of work between scenarios (the signing key stays)."""
        connection = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            await connection.execute(f"TRUNCATE {WORK_TABLES}")
        finally:
            await connection.close()
        await self.peers.post("/reset")

    async def connections(self) -> int:
        connection = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            count: int = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE 'agent-notify%'"
            )
            return count
        finally:
            await connection.close()


@dataclass
class Response:
    status_code: int
    text: str


class Client:
    """The load driver's HTTP client: aiohttp, because httpx's connection pool costs the driver
    more CPU than the service spends at 64 requests in flight (encode/httpcore#1035), which
    would cap the figures at the driver's speed. Requests with a JSON body, like the README's."""

    def __init__(self, base_url: str, connections: int) -> None:
        self._base_url = base_url
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=900),
        )

    async def post(self, path: str, json: Any) -> Response:
        async with self._session.post(self._base_url + path, json=json) as response:
            return Response(response.status, await response.text())

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Response:
        async with self._session.get(self._base_url + path, params=params) as response:
            return Response(response.status, await response.text())

    async def aclose(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def client(base_url: str, connections: int = 100) -> Client:
    return Client(base_url, connections)


def cpu_seconds(process: ServiceProcess | Peers) -> float:
    """CPU time of a service process, or of the peers' process, so far."""
    assert process.process is not None
    times = psutil.Process(process.process.pid).cpu_times()
    return float(times.user + times.system)


def postgres_cpu_seconds() -> float:
    """CPU time of every Postgres process on this machine (the server is local), those that
    have ended included: the postmaster counts its reaped children's time (a backend or an
    autovacuum worker that ends between two readings is then counted, not lost)."""
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times", "ppid"]):
        times = process.info["cpu_times"]
        if process.info["name"] not in ("postgres", "postmaster") or times is None:
            continue
        total += times.user + times.system
        try:
            parent = psutil.Process(process.info["ppid"]).name()
        except psutil.Error:
            parent = ""
        if parent not in ("postgres", "postmaster"):  # the postmaster
            total += times.children_user + times.children_system
    return total


def rss_mb(service: ServiceProcess) -> float:
    assert service.process is not None
    return psutil.Process(service.process.pid).memory_info().rss / 2**20


async def gather_limited(count: int, limit: int, job: Callable[[int], Awaitable[None]]) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(i: int) -> None:
        async with semaphore:
            await job(i)

    await asyncio.gather(*(one(i) for i in range(count)))


# -- scenarios ------------------------------------------------------------------------------


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
            n, 16, lambda i: _ok(http.post(f"/workflows/l{i}/run", json=f"late {i}"))
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


async def _ok(request: Awaitable[Response]) -> None:
    response = await request
    assert response.status_code < 300, response.text


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
            await _ok(http.post(f"/workflows/t{i}/on_notify/send", json=f"t{i}@example.com"))
            await _ok(http.post(f"/workflows/t{i}/run/send", json=f"throughput {i}"))

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
            n, in_flight, lambda i: _ok(http.post(f"/workflows/w{i}/run/send", json=f"w {i}"))
        )
        started = time.monotonic()
        await gather_limited(
            n,
            in_flight,
            lambda i: _ok(http.post(f"/workflows/w{i}/on_notify/send", json=f"w{i}@example.com")),
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
            n, 64, lambda i: _ok(setup.post(f"/workflows/a{i}/run/send", json=f"a {i}"))
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
    "approvals": lambda bench: _approvals(bench),
    "agent": agent,
}


async def _approvals(bench: Bench) -> dict[str, Any]:
    from bench.approvals import approvals  # it builds on this module

    return await approvals(bench)


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
