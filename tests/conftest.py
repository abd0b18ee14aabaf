"""Fixtures: a real Postgres, a real SMTP server, a fake OpenAI-compatible LLM, and app instances.

Postgres is TEST_DATABASE_URL's server when set, else an embedded one started for the session.
Each session gets its own database, migrated once; each test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import migrate
from app.db.connection import asyncpg_dsn, create_engine
from app.db.embedded import EmbeddedPostgres
from app.db.models import Base
from app.main import create_app
from tests.fakes.llm import FakeLLM
from tests.fakes.smtp import Inbox
from tests.pgbouncer import PgBouncer, start_pgbouncer
from tests.service import ServiceProcess

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A Postgres server: TEST_DATABASE_URL's, or an embedded one for this session.

    Its data lives outside pytest's temporary root: run as root, the server runs as another
    user, which must traverse every folder above its data, and any other pytest session
    starting meanwhile makes /tmp/pytest-of-root private again (0700), killing this server.
    """
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    data_dir = Path(tempfile.mkdtemp(prefix="agent-notify-test-pg-"))
    server = EmbeddedPostgres.start(data_dir)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def create_database(server_url: str, name: str) -> str:
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def new_database(postgres_url: str) -> Iterator[Callable[[], Awaitable[str]]]:
    """Create empty databases on the test server; all are dropped at the end of the session."""
    names: list[str] = []

    async def create() -> str:
        name = f"agent_notify_test_{os.getpid()}_{secrets.token_hex(3)}"
        names.append(name)
        return await create_database(postgres_url, name)

    yield create

    async def drop_all() -> None:
        for name in names:
            await drop_database(postgres_url, name)

    asyncio.run(drop_all())


@pytest.fixture(scope="session")
def migrated_database(new_database: Callable[[], Awaitable[str]]) -> str:
    """One migrated database for the session's tests."""

    async def setup() -> str:
        url = await new_database()
        engine = create_engine(url, pool_size=1)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        return url

    return asyncio.run(setup())


@pytest.fixture(scope="session")
def pgbouncer(postgres_url: str, migrated_database: str) -> Iterator[PgBouncer]:
    """Debian's PgBouncer in transaction mode in front of the test server, for this session."""
    started = start_pgbouncer(postgres_url, migrated_database)
    if isinstance(started, str):
        pytest.skip(started)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def pooled(pgbouncer: PgBouncer, database_url: str) -> dict[str, Any]:
    """Settings overrides for an app behind the pooler: queries through PgBouncer in
    transaction mode, LISTEN and migrations on the direct connection."""
    return {
        "database_url": pgbouncer.url_for(database_url),
        "listen_database_url": database_url,
        "database_pooler": "transaction",
    }


# Every table of the schema: each test starts with all of them empty.
TABLES = ", ".join(table.name for table in Base.metadata.sorted_tables)


@pytest.fixture
async def database_url(migrated_database: str) -> str:
    """The session's database, emptied for this test."""
    connection = await asyncpg.connect(asyncpg_dsn(migrated_database))
    try:
        await connection.execute(f"TRUNCATE {TABLES}")
    finally:
        await connection.close()
    return migrated_database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test database, for checking and arranging rows."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    llm = FakeLLM()
    await llm.start()
    try:
        yield llm
    finally:
        await llm.stop()


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    smtp = Inbox()
    await smtp.start()
    try:
        yield smtp
    finally:
        await smtp.stop()


@dataclass
class RunningApp:
    app: FastAPI
    settings: Settings
    client: httpx.AsyncClient
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    async def stop(self) -> None:
        if self.task.done():
            return
        self.server.should_exit = True
        await self.client.aclose()
        await self.task


@pytest.fixture
def app_settings(
    database_url: str, fake_llm: FakeLLM, inbox: Inbox, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings for an app on the test database, fake LLM and SMTP server, with overrides."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "agent_model": "openai/fake-model",
            "agent_api_base": fake_llm.url,
            "agent_api_key": "test-key",
            "smtp_host": "127.0.0.1",
            "smtp_port": inbox.port,
            "mail_from": "agent-notify <agent-notify@example.test>",
            "lease_seconds": 5.0,
            "poll_interval_seconds": 1.0,
            "retry_initial_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "retry_max_attempts": 4,
            "shutdown_grace_seconds": 2.0,
        }
        values.update(overrides)
        return Settings(**values)

    return build


# One TLS context for the tests' HTTP clients: each new one would load the CA store again.
TLS = ssl.create_default_context()


async def serve(settings: Settings) -> RunningApp:
    """Start the app under a real uvicorn server on a free port, in this event loop."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(60):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, verify=TLS)
    return RunningApp(app=app, settings=settings, client=client, server=server, task=task)


@pytest.fixture
async def start_app(
    app_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Awaitable[RunningApp]]]:
    """Start app instances (`await start_app(**settings)`); all are stopped after the test."""
    running: list[RunningApp] = []

    async def start(**overrides: Any) -> RunningApp:
        instance = await serve(app_settings(**overrides))
        running.append(instance)
        return instance

    yield start
    for instance in reversed(running):
        await instance.stop()


@pytest.fixture
async def start_service(
    app_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[ServiceProcess]]]:
    """Start the service as child processes (`await start_service(**settings)`); all are killed
    after the test."""
    started: list[ServiceProcess] = []

    async def start(
        server: str = "serve",
        file_limit: int | None = None,
        host: str = "127.0.0.1",
        **overrides: Any,
    ) -> ServiceProcess:
        log = tmp_path / f"service-{len(started)}.log"
        service = ServiceProcess(
            app_settings(**overrides),
            log,
            server=server,  # type: ignore[arg-type]
            file_limit=file_limit,
            host=host,
            launch="fork",
        )
        started.append(service)
        return await service.start()

    yield start
    for service in started:
        await service.kill()


@pytest.fixture
async def client(start_app: Callable[..., Awaitable[RunningApp]]) -> httpx.AsyncClient:
    """An HTTP client for one app instance with the default test settings."""
    return (await start_app()).client
