"""What every benchmark scenario stands on: the service's processes and their peers (the fake
LLM and the SMTP sink), the `Bench` that starts them on a scratch database, an HTTP client, and
the process figures (CPU seconds, RSS). The scenarios live in run.py and the modules beside it."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import psutil

from app.config import Settings
from app.db.connection import asyncpg_dsn
from app.db.models import Base
from tests.fakes.mcp_server import McpHttpProcess
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


def cpu_seconds(process: ServiceProcess | Peers | McpHttpProcess) -> float:
    """CPU time of a service process, the peers' process or the MCP server's, so far."""
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


async def ok(request: Awaitable[Response]) -> None:
    response = await request
    assert response.status_code < 300, response.text
