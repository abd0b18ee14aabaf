"""Work left by a process that died (or stopped) is finished by the next one on the database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

from app.config import Settings
from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually, until_workflow

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(settings: Settings, port: int) -> dict[str, str]:
    """The settings as the environment variables an operator would set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "SMTP_"))}
    env.update(
        DATABASE_URL=str(settings.database_url),
        AGENT_MODEL=str(settings.agent_model),
        AGENT_API_BASE=str(settings.agent_api_base),
        AGENT_API_KEY="test-key",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(settings.smtp_port),
        LEASE_SECONDS=str(settings.lease_seconds),
        POLL_INTERVAL_SECONDS=str(settings.poll_interval_seconds),
        PORT=str(port),
        DATA_DIR=str(settings.data_dir),
    )
    return env


async def start_process(settings: Settings, log: Path) -> tuple[asyncio.subprocess.Process, str]:
    """`agent-notify serve` in a child process with these settings, once it is ready."""
    port = free_port()
    with open(log, "wb") as output:  # noqa: ASYNC230 - a local file, opened once
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            cwd=ROOT,
            env=environment(settings, port),
            stdout=output,
            stderr=output,
        )
    base_url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        if process.returncode is not None:
            text = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"the service exited:\n{text}")
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base_url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, bool, timeout=60, interval=0.1)
    return process, base_url


async def test_run_of_a_killed_process_is_finished_by_the_next(
    app_settings: Callable[..., Settings],
    start_app: Callable[..., Awaitable[RunningApp]],
    fake_llm: FakeLLM,
    inbox: Inbox,
    tmp_path: Path,
) -> None:
    query = "survive kill -9"
    release = fake_llm.hold(query)
    settings = app_settings(lease_seconds=2.0, poll_interval_seconds=0.2)
    process, base_url = await start_process(settings, tmp_path / "first.log")
    try:
        async with httpx.AsyncClient(base_url=base_url) as first:
            assert (await first.post("/workflows/crash/run/send", json=query)).status_code == 202
            assert (
                await first.post("/workflows/crash/on_notify/send", json="me@example.com")
            ).status_code == 202
        await fake_llm.wait_for_calls(query)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    release.set()

    second = await start_app(lease_seconds=2.0, poll_interval_seconds=0.2)
    [message] = await inbox.wait_for(1, timeout=20)
    assert message.get_content().strip() == answer_for(query)
    status = await until_workflow(second.client, "crash", all_sent)
    assert status["status"] == "succeeded"
    # The LLM is called again only because a process died mid-call.
    assert fake_llm.calls_for(query) == 2
    assert status["attempts"] == 2


async def test_expired_leases_are_taken_over_at_start_up(
    start_app: Callable[..., Awaitable[RunningApp]],
    db: asyncpg.Connection,
    fake_llm: FakeLLM,
    inbox: Inbox,
) -> None:
    # A dead process left a run mid-call and a delivery mid-send, both leased to it.
    await db.execute("""
        INSERT INTO workflow (key, query, status, attempts, lease_owner, lease_expires_at,
                              started_at)
        VALUES ('orphan-run', 'left behind', 'running', 1, 'dead', now() - interval '1 s', now());
        INSERT INTO workflow (key, query, status, output, finished_at)
        VALUES ('orphan-mail', 'q', 'succeeded', 'the answer', now());
        INSERT INTO promise (workflow_key, name, state, value, completed_at)
        VALUES ('orphan-mail', 'agent_response', 'resolved', '"the answer"', now());
        INSERT INTO subscription (id, workflow_key, promise_name, email, status, message_id,
                                  attempts, lease_owner, lease_expires_at, ready_at)
        VALUES (gen_random_uuid(), 'orphan-mail', 'agent_response', 'me@example.com', 'ready',
                '<orphan@test>', 1, 'dead', now() - interval '1 s', now());
    """)
    app = await start_app()
    [message] = await inbox.wait_for(1)
    assert message["Message-ID"] == "<orphan@test>"
    assert message.get_content().strip() == "the answer"
    status = await until_workflow(app.client, "orphan-run", lambda s: s["status"] == "succeeded")
    assert status["output"] == answer_for("left behind")
    assert status["attempts"] == 2
    await until_workflow(app.client, "orphan-mail", all_sent)


async def test_graceful_stop_hands_back_unfinished_work_at_once(
    start_app: Callable[..., Awaitable[RunningApp]],
    fake_llm: FakeLLM,
    inbox: Inbox,
) -> None:
    query = "outlives its process"
    release = fake_llm.hold(query)
    # A lease far longer than the test: only the hand-back lets the next process take over.
    first = await start_app(lease_seconds=300, shutdown_grace_seconds=0.2)
    await first.client.post("/workflows/handback/run/send", json=query)
    await first.client.post("/workflows/handback/on_notify/send", json="me@example.com")
    await fake_llm.wait_for_calls(query)
    await first.stop()
    release.set()

    second = await start_app(lease_seconds=300, poll_interval_seconds=0.2)
    await inbox.wait_for(1)
    status = await until_workflow(second.client, "handback", all_sent)
    assert status["status"] == "succeeded"
    assert fake_llm.calls_for(query) == 2


async def test_sync_waiter_on_one_replica_is_woken_by_another(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    # Poll interval of a minute: only the NOTIFY through Postgres can wake the waiter in time.
    runner = await start_app(poll_interval_seconds=60)
    waiter = await start_app(poll_interval_seconds=60)
    release = fake_llm.hold("cross")
    await runner.client.post("/workflows/cross/run/send", json="cross")
    await fake_llm.wait_for_calls("cross")
    attached = asyncio.create_task(waiter.client.post("/workflows/cross/run", json="cross"))
    listener = waiter.app.state.service.listener
    await eventually(lambda: asyncio.sleep(0, listener.waiter_count), lambda n: n == 1)
    release.set()
    async with asyncio.timeout(5):
        response = await attached
    assert response.json()["output"] == answer_for("cross")
