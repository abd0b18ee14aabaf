"""Health, readiness and metrics."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import asyncpg
import httpx

from tests.conftest import RunningApp
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, samples, until_workflow
from tests.service import free_port


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": True, "migrations": True, "listener": True, "workers": True},
        "tools": {"approval": "up", "python": "up"},
    }


async def test_an_mcp_server_that_is_down_shows_in_readiness_but_leaves_it_ready(
    start_app: Callable[..., Awaitable[RunningApp]],
) -> None:
    config = {"mcpServers": {"calc": {"url": f"http://127.0.0.1:{free_port()}/mcp"}}}
    app = await start_app(agent_mcp_config=json.dumps(config))
    ready = await app.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["tools"] == {"approval": "up", "python": "up", "calc": "down"}


async def test_metrics_count_what_happened(client: httpx.AsyncClient, inbox: Inbox) -> None:
    await client.post("/workflows/m/run", json="q")
    await client.post("/workflows/m/on_notify", json="a@example.com")
    await until_workflow(client, "m", all_sent)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    figures = samples(response.text)
    assert figures[("agent_notify_runs_started_total", ())] == 1
    assert figures[("agent_notify_runs_finished_total", (("outcome", "succeeded"),))] == 1
    assert figures[("agent_notify_emails_total", (("outcome", "sent"),))] == 1
    assert figures[("agent_notify_llm_call_seconds_count", (("outcome", "ok"),))] == 1
    assert figures[("agent_notify_resolve_to_email_seconds_count", ())] == 1
    assert figures[("agent_notify_workflows", (("state", "succeeded"),))] == 1
    assert figures[("agent_notify_subscriptions", (("state", "sent"),))] == 1
    assert figures[("agent_notify_claimable", (("kind", "run"),))] == 0
    assert figures[("agent_notify_listener_reconnects_total", ())] == 0


async def test_readiness_follows_the_schema_version(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    head = await db.fetchval("SELECT version_num FROM alembic_version")
    try:
        await db.execute("UPDATE alembic_version SET version_num = '0001'")  # behind this code
        behind = await client.get("/readyz")
        assert behind.status_code == 503
        assert behind.json()["checks"]["migrations"] is False
        # Ahead (a newer replica migrated during a rolling deploy): still ready.
        await db.execute("UPDATE alembic_version SET version_num = 'f00dfeed'")
        assert (await client.get("/readyz")).status_code == 200
    finally:
        await db.execute("UPDATE alembic_version SET version_num = $1", head)
