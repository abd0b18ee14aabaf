"""The rest of the HTTP contract: attach, events, external promises, cancel, delete, listing."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually, plain_text, quoted_text, samples, until_workflow

# -- attach -------------------------------------------------------------------------------


async def test_output_waits_for_the_result(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    app = await start_app()
    client = app.client
    release = fake_llm.hold("attach")
    await client.post("/workflows/att/run/send", json="attach")
    await fake_llm.wait_for_calls("attach")
    early = await client.get("/workflows/att/output", params={"timeout": 0.2})
    assert early.status_code == 202
    assert early.json() == {"key": "att", "status": "running"}
    listener = app.app.state.process.listener
    watching = listener.waiter_count  # the run in flight watches its own key
    attached = asyncio.create_task(client.get("/workflows/att/output", params={"timeout": 30}))
    await eventually(lambda: asyncio.sleep(0, listener.waiter_count), lambda n: n > watching)
    release.set()  # only now: the request above is waiting
    response = await attached
    assert response.status_code == 200
    assert response.json() == {"key": "att", "status": "succeeded", "output": answer_for("attach")}


async def test_a_change_nobody_announced_is_found_by_the_fallback_poll(
    start_app: Callable[..., Awaitable[RunningApp]], db: asyncpg.Connection
) -> None:
    app = await start_app(poll_interval_seconds=0.3)
    await db.execute("""
        INSERT INTO workflow (key, query, status, attempts, lease_owner, lease_expires_at)
        VALUES ('quiet', 'q', 'running', 1, 'elsewhere', now() + interval '1 hour')
    """)
    attached = asyncio.create_task(
        app.client.get("/workflows/quiet/output", params={"timeout": 30})
    )
    listener = app.app.state.process.listener
    await eventually(lambda: asyncio.sleep(0, listener.waiter_count), lambda n: n == 1)
    # Finished behind the service's back: no NOTIFY, no local wake-up.
    await db.execute("""
        UPDATE workflow SET status = 'succeeded', output = 'done quietly', finished_at = now(),
               updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
        WHERE key = 'quiet'
    """)
    async with asyncio.timeout(5):
        response = await attached
    assert response.json()["output"] == "done quietly"


async def test_output_of_failed_unknown_and_cancelled_workflows(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    assert (await client.get("/workflows/nobody/output")).status_code == 404
    fake_llm.fail("broken", 400)
    await client.post("/workflows/broken/run/send", json="broken")
    failed = await client.get("/workflows/broken/output", params={"timeout": 10})
    assert failed.status_code == 424
    assert failed.json()["error"]["code"] == "workflow_failed"
    fake_llm.hold("stopped")
    await client.post("/workflows/stopped/run/send", json="stopped")
    await client.post("/workflows/stopped/cancel")
    cancelled = await client.get("/workflows/stopped/output", params={"timeout": 10})
    assert cancelled.status_code == 409
    assert cancelled.json()["error"]["code"] == "workflow_cancelled"


# -- events -------------------------------------------------------------------------------


async def read_events(
    client: httpx.AsyncClient, key: str, events: list[tuple[str, dict[str, Any]]]
) -> None:
    """Collect the stream's events into `events` until the server ends it."""
    async with client.stream("GET", f"/workflows/{key}/events", timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:") and name is not None:
                events.append((name, json.loads(line.removeprefix("data:"))))
                name = None


async def test_events_follow_a_workflow_until_its_emails_are_out(
    client: httpx.AsyncClient, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    release = fake_llm.hold("followed")
    await client.post("/workflows/ev/on_notify/send", json="a@example.com")
    await client.post("/workflows/ev/run/send", json="followed")
    await fake_llm.wait_for_calls("followed")
    events: list[tuple[str, dict[str, Any]]] = []
    reader = asyncio.create_task(read_events(client, "ev", events))
    await eventually(lambda: asyncio.sleep(0, len(events)), lambda n: n >= 2)
    release.set()
    async with asyncio.timeout(10):
        await reader  # the server ends the stream once the workflow and its emails are done
    names = [name for name, _ in events]
    assert names[0] == "running"
    assert "succeeded" in names
    deliveries = [data["status"] for name, data in events if name == "subscription"]
    assert deliveries[0] == "waiting"
    assert deliveries[-1] == "sent"
    succeeded = next(data for name, data in events if name == "succeeded")
    assert succeeded["output"] == answer_for("followed")


async def test_events_of_a_finished_workflow_end_at_once(client: httpx.AsyncClient) -> None:
    await client.post("/workflows/done/run", json="q")
    events: list[tuple[str, dict[str, Any]]] = []
    async with asyncio.timeout(5):
        await read_events(client, "done", events)
    # Its one step (begun, finished), then its final state.
    assert [name for name, _ in events] == ["step", "step", "succeeded"]
    assert (await client.get("/workflows/nobody/events")).status_code == 404


# -- promises -----------------------------------------------------------------------------


async def test_a_promise_resolved_from_outside_notifies_its_subscribers(
    client: httpx.AsyncClient, inbox: Inbox
) -> None:
    await client.post("/workflows/hitl/run/send", json="q")
    subscribed = await client.post(
        "/workflows/hitl/on_notify/send", json={"email": "boss@example.com", "promise": "approval"}
    )
    assert subscribed.status_code == 202
    peek = await client.get("/workflows/hitl/promises/approval")
    assert peek.json() == {
        "name": "approval",
        "state": "pending",
        "value": None,
        "error": None,
        "completed_at": None,
    }
    value = {"approved": True, "by": "Ann"}
    resolved = await client.post("/workflows/hitl/promises/approval/resolve", json={"value": value})
    assert resolved.status_code == 200
    assert resolved.json()["state"] == "resolved"
    assert resolved.json()["value"] == value
    [message] = await inbox.wait_for(1)
    assert message["Subject"] == "Your agent task hitl: approval was resolved"
    assert json.loads(quoted_text(plain_text(message))) == value

    again = await client.post("/workflows/hitl/promises/approval/resolve", json={"value": value})
    assert again.status_code == 200  # the same outcome: a no-op
    other = await client.post("/workflows/hitl/promises/approval/resolve", json={"value": False})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "promise_already_completed"
    rejected = await client.post("/workflows/hitl/promises/approval/reject", json={"error": "no"})
    assert rejected.status_code == 409
    await until_workflow(client, "hitl", all_sent)
    assert [m["To"] for m in inbox.messages].count("boss@example.com") == 1


async def test_a_rejected_promise_tells_its_subscribers(
    client: httpx.AsyncClient, inbox: Inbox
) -> None:
    await client.post("/workflows/rej/run", json="q")
    await client.post(
        "/workflows/rej/on_notify/send", json={"email": "a@example.com", "promise": "review"}
    )
    response = await client.post(
        "/workflows/rej/promises/review/reject", json={"error": "the reviewer declined"}
    )
    assert response.json()["state"] == "rejected"
    [message] = await inbox.wait_for(1)
    assert quoted_text(plain_text(message)) == "the reviewer declined"


async def test_the_agents_own_promise_is_completed_by_its_run_only(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/workflows/own/run/send", json="q")
    response = await client.post(
        "/workflows/own/promises/agent_response/resolve", json={"value": "forged"}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "agent_promise"
    assert "/cancel" in response.json()["error"]["message"]


async def test_promises_of_unknown_workflows_and_bad_bodies(client: httpx.AsyncClient) -> None:
    missing = await client.post("/workflows/ghost/promises/p/resolve", json={"value": 1})
    assert missing.status_code == 404
    assert (await client.get("/workflows/ghost/promises/p")).status_code == 404
    await client.post("/workflows/real/run", json="q")
    assert (await client.get("/workflows/real/promises/never")).status_code == 404
    created = await client.post("/workflows/real/promises/fresh/resolve", json={"value": [1, 2]})
    assert created.status_code == 200  # created completed: later subscribers get it at once
    for body in ({}, {"value": 1, "x": 2}, {"value": "nul \u0000"}):
        assert (
            await client.post("/workflows/real/promises/p2/resolve", json=body)
        ).status_code == 422
    for raw in (b'{"value": NaN}', b'{"value": [Infinity]}', b'{"value": 1e400}'):
        response = await client.post(
            "/workflows/real/promises/p2/resolve",
            content=raw,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, raw
    assert (
        await client.post("/workflows/real/promises/p2/reject", json={"error": ""})
    ).status_code == 422
    bad_name = await client.post("/workflows/real/promises/bad%20name/resolve", json={"value": 1})
    assert bad_name.status_code == 422


# -- cancel -------------------------------------------------------------------------------


async def test_cancel_stops_the_run_and_tells_everyone(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM, inbox: Inbox
) -> None:
    worker = await start_app()
    other = await start_app()  # the cancel comes through another replica
    fake_llm.hold("endless")
    await worker.client.post("/workflows/cx/on_notify/send", json="a@example.com")
    await worker.client.post("/workflows/cx/run/send", json="endless")
    await fake_llm.wait_for_calls("endless")
    waiting = asyncio.create_task(worker.client.post("/workflows/cx/run", json="endless"))

    response = await other.client.post("/workflows/cx/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["promise"] == {
        "name": "agent_response",
        "state": "rejected",
        "value": None,
        "error": "cancelled",
        "completed_at": response.json()["promise"]["completed_at"],
    }
    sync = await waiting
    assert sync.status_code == 409
    assert sync.json()["error"]["code"] == "workflow_cancelled"
    [message] = await inbox.wait_for(1)
    assert "was cancelled" in message["Subject"]

    # The replica running it abandoned the LLM call (the fake still holds it).
    async def abandoned() -> float:
        figures = samples((await worker.client.get("/metrics")).text)
        return figures.get(("agent_notify_runs_finished_total", (("outcome", "abandoned"),)), 0)

    await eventually(abandoned, lambda n: n == 1)
    again = await other.client.post("/workflows/cx/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_finished"
    assert (await other.client.post("/workflows/nobody/cancel")).status_code == 404


# -- delete and retention -----------------------------------------------------------------


async def test_delete_frees_the_key(client: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    fake_llm.hold("busy")
    await client.post("/workflows/del/run/send", json="busy")
    refused = await client.delete("/workflows/del")
    assert refused.status_code == 409
    await client.post("/workflows/del/cancel")
    assert (await client.delete("/workflows/del")).status_code == 204
    assert (await client.get("/workflows/del")).status_code == 404
    reused = await client.post("/workflows/del/run/send", json="a new question")
    assert reused.json()["status"] == "accepted"
    assert (await client.delete("/workflows/nobody")).status_code == 404


async def test_a_run_cancelled_unheard_cannot_finish_the_next_run_of_its_key(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM, db: asyncpg.Connection
) -> None:
    # No fallback poll and no lease lapsing during the test: only a notification could tell the
    # worker that its run was cancelled.
    worker = await start_app(poll_interval_seconds=60, lease_seconds=60)
    other = await start_app()  # cancel and delete come through another replica
    release = fake_llm.hold("old question")
    await worker.client.post("/workflows/reused/run/send", json="old question")
    await fake_llm.wait_for_calls("old question")

    # The worker hears nothing of the key meanwhile: its run is not told of the cancel.
    listener = worker.app.state.process.listener
    wake = listener.wake
    listener.wake = lambda key, *args, **kwargs: (
        None if key == "reused" else wake(key, *args, **kwargs)
    )  # type: ignore[method-assign]
    try:
        assert (await other.client.post("/workflows/reused/cancel")).status_code == 200
        assert (await other.client.delete("/workflows/reused")).status_code == 204
        again = await worker.client.post("/workflows/reused/run/send", json="new question")
        assert again.status_code == 202
        leased_to = await db.fetchval("SELECT lease_owner FROM workflow WHERE key = 'reused'")
        assert leased_to == worker.app.state.process.store.scope.owner  # the same process runs both
        release.set()  # the cancelled run's answer arrives only now
        status = await until_workflow(worker.client, "reused", lambda s: s["status"] == "succeeded")
    finally:
        listener.wake = wake
    assert status["output"] == answer_for("new question")
    assert fake_llm.calls_for("new question") == 1


async def test_finished_workflows_are_deleted_after_the_retention(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox, db: asyncpg.Connection
) -> None:
    app = await start_app(retention=1)
    await app.client.post("/workflows/old/run", json="q")
    await app.client.post("/workflows/old/on_notify", json="a@example.com")
    await eventually(lambda: db.fetchval("SELECT count(*) FROM workflow"), lambda n: n == 0)
    assert await db.fetchval("SELECT count(*) FROM subscription") == 0
    assert await db.fetchval("SELECT count(*) FROM promise") == 0


# -- listing ------------------------------------------------------------------------------


async def test_listing_pages_newest_first_while_rows_are_added(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    for i in range(5):
        await client.post(f"/workflows/l{i}/run", json=f"q{i}")
    first = (await client.get("/workflows", params={"limit": 2})).json()
    assert [item["key"] for item in first["items"]] == ["l4", "l3"]
    assert first["items"][0]["status"] == "succeeded"
    await client.post("/workflows/l5/run", json="q5")  # added between pages
    second = (
        await client.get("/workflows", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    third = (
        await client.get("/workflows", params={"limit": 2, "cursor": second["next_cursor"]})
    ).json()
    assert [item["key"] for item in second["items"]] == ["l2", "l1"]
    assert [item["key"] for item in third["items"]] == ["l0"]
    assert third["next_cursor"] is None

    fake_llm.fail("bad", 400)
    await client.post("/workflows/lf/run/send", json="bad")
    await until_workflow(client, "lf", lambda s: s["status"] == "failed")
    failed = (await client.get("/workflows", params={"status": "failed"})).json()
    assert [item["key"] for item in failed["items"]] == ["lf"]
    assert (await client.get("/workflows", params={"cursor": "junk"})).status_code == 422
    for forged in (
        "0001-01-01T00:00:00+14:00|k",
        "2026-01-01T00:00:00|k",
        "2026-01-01T00:00:00+00:00|a\x00b",
    ):
        cursor = base64.urlsafe_b64encode(forged.encode()).decode()
        response = await client.get("/workflows", params={"cursor": cursor})
        assert response.status_code == 422, forged
    assert (await client.get("/workflows", params={"status": "odd"})).status_code == 422


async def test_listing_by_key_prefix(
    start_app: Callable[..., Awaitable[RunningApp]], db: asyncpg.Connection
) -> None:
    app = await start_app()
    client = app.client
    # Oldest first; finished, so that no worker touches them.
    rows = [
        ("ord-1", "succeeded"),
        ("ord-2", "failed"),
        ("ord-10", "succeeded"),
        ("ord_1", "succeeded"),
        ("ordx1", "succeeded"),
        ("ord", "succeeded"),
        ("Ord-3", "succeeded"),
        ("other", "succeeded"),
    ]
    for age, (key, status) in zip(range(len(rows), 0, -1), rows, strict=True):
        await db.execute(
            """
            INSERT INTO workflow (key, query, status, created_at, finished_at)
            VALUES ($1, 'q', $2, now() - make_interval(mins => $3), now())
            """,
            key,
            status,
            age,
        )

    async def listed(**params: Any) -> tuple[list[str], str | None]:
        response = await client.get("/workflows", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        return [item["key"] for item in page["items"]], page["next_cursor"]

    assert await listed(key_prefix="ord-") == (["ord-10", "ord-2", "ord-1"], None)
    assert await listed(key_prefix="ord-1") == (["ord-10", "ord-1"], None)
    assert await listed(key_prefix="Ord") == (["Ord-3"], None)  # case-sensitive
    assert await listed(key_prefix="other") == (["other"], None)  # a whole key
    assert await listed(key_prefix="ord_") == (["ord_1"], None)  # '_' is no wildcard
    assert await listed(key_prefix="nothing") == ([], None)
    assert await listed(key_prefix="x" * 256) == ([], None)
    assert len((await listed(key_prefix=""))[0]) == len(rows)  # empty: every key
    assert await listed(key_prefix="ord-", status="failed") == (["ord-2"], None)

    # Pages of one prefix: the cursor stays valid with it, rows added meanwhile shift nothing.
    first, cursor = await listed(key_prefix="ord", limit=2)
    assert first == ["ord", "ordx1"]
    await client.post("/workflows/ord-new/run", json="q")
    second, cursor = await listed(key_prefix="ord", limit=2, cursor=cursor)
    assert second == ["ord_1", "ord-10"]
    third, cursor = await listed(key_prefix="ord", limit=2, cursor=cursor)
    assert (third, cursor) == (["ord-2", "ord-1"], None)
    assert (await listed(key_prefix="ord", limit=2))[0] == ["ord-new", "ord"]

    for invalid in ("%", "ord%", "a b", "ord/", "ord*", "x" * 257):
        response = await client.get("/workflows", params={"key_prefix": invalid})
        assert response.status_code == 422, invalid
        assert response.json()["error"]["code"] == "invalid_key_prefix"
        assert "256 characters" in response.json()["error"]["message"]

    # No key the API accepts holds '%'; the store still never reads it (or '_') as a wildcard.
    for key in ("p%q", "pxq", "p_q"):
        await db.execute(
            "INSERT INTO workflow (key, query, status) VALUES ($1, 'q', 'cancelled')", key
        )
    reads = app.app.state.process.store.reads
    for prefix, expected in (("p%", ["p%q"]), ("p_", ["p_q"]), ("p", ["p_q", "pxq", "p%q"])):
        found = await reads.page(status=None, limit=10, before=None, key_prefix=prefix)
        assert sorted(row.key for row in found) == sorted(expected), prefix


async def test_subscriptions_per_workflow_are_capped(
    start_app: Callable[..., Awaitable[RunningApp]],
) -> None:
    app = await start_app(max_subscriptions_per_workflow=2)
    for email in ("a@example.com", "b@example.com"):
        assert (
            await app.client.post("/workflows/cap/on_notify/send", json=email)
        ).status_code == 202
    refused = await app.client.post("/workflows/cap/on_notify/send", json="c@example.com")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "too_many_subscriptions"
    again = await app.client.post("/workflows/cap/on_notify/send", json="a@example.com")
    assert again.status_code == 202  # an existing subscriber is not a new one


@pytest.mark.parametrize("prefix", ["/workflows", "/AsyncNotificationsAgent"])
async def test_new_endpoints_answer_under_both_path_styles(
    client: httpx.AsyncClient, prefix: str
) -> None:
    await client.post(f"{prefix}/both/run", json="q")
    assert (await client.get(f"{prefix}/both/output")).status_code == 200
    assert (await client.get(f"{prefix}/both/promises/agent_response")).status_code == 200
