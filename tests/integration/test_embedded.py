"""With no DATABASE_URL the service runs on an embedded Postgres, and never starts it twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from app.db.embedded import EmbeddedPostgres, _library
from tests.conftest import RunningApp
from tests.fakes.llm import answer_for

KILLED_AFTER_START = """
import os, sys
from pathlib import Path
from app.db.embedded import EmbeddedPostgres
EmbeddedPostgres.start(Path(sys.argv[1]))
os.kill(os.getpid(), 9)
"""


async def select_one(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        value: int = await connection.fetchval("SELECT 1")
        return value
    finally:
        await connection.close()


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "pg" / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


async def test_service_without_database_url_starts_and_stops_embedded_postgres(
    start_app: Callable[..., Awaitable[RunningApp]], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    app = await start_app(database_url=None, data_dir=data_dir)
    response = await app.client.post("/workflows/embedded/run", json="q")
    assert response.json()["output"] == answer_for("q")
    assert postmaster_pid(data_dir) is not None
    await app.stop()
    assert postmaster_pid(data_dir) is None


def test_server_left_running_by_a_killed_process_is_reused(tmp_path: Path) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_START, str(tmp_path)],
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    orphan = postmaster_pid(tmp_path)
    assert orphan is not None

    server = EmbeddedPostgres.start(tmp_path)
    try:
        assert postmaster_pid(tmp_path) == orphan  # attached, not started a second time

        assert asyncio.run(select_one(server.url)) == 1
    finally:
        server.stop()
    assert postmaster_pid(tmp_path) is None


def test_a_start_slower_than_the_librarys_timeout_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # embedded-postgres gives pg_ctl 10 s; here it "times out" although the server comes up.
    postgres_server = _library().postgres_server
    real_pg_ctl = postgres_server.pg_ctl

    def pg_ctl_timing_out(args: list[str], **kwargs: object) -> str:
        output: str = real_pg_ctl(args, **kwargs)
        if "start" in args:
            raise subprocess.TimeoutExpired("pg_ctl", 10)
        return output

    monkeypatch.setattr(postgres_server, "pg_ctl", pg_ctl_timing_out)
    server = EmbeddedPostgres.start(tmp_path)
    try:
        assert asyncio.run(select_one(server.url)) == 1
    finally:
        server.stop()
    assert postmaster_pid(tmp_path) is None
