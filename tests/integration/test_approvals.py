"""Runs that wait for a person: the scripted fake LLM calls request_approval, the run waits
(`waiting`, no lease, no runner slot), the approver gets an email (aiosmtpd) with a signed link,
and the decision — by the link's page, the promise endpoints or the timeout — lets the run go on
from its journal with the tool's result."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from app.notify.links import APPROVAL, UNSUBSCRIBE, Signer
from tests.conftest import RunningApp
from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls
from tests.fakes.smtp import Inbox
from tests.helpers import eventually, plain_text, until_workflow

StartApp = Callable[..., Awaitable[RunningApp]]
PUBLIC_URL = "https://agent.example.test"
SECRET = "approvals-test-secret"
APPROVER = "approver@example.com"
QUERY = "deploy the release"
LINK = re.compile(re.escape(PUBLIC_URL) + r"(/approvals/[A-Za-z0-9_.-]+)")


def script(fake_llm: FakeLLM, query: str = QUERY) -> None:
    fake_llm.script_turns(
        query,
        ToolCalls(Call("request_approval", {"question": "May I deploy?", "details": "v2.1"})),
        Text("finished after the decision"),
    )


async def start(start_app: StartApp, **overrides: Any) -> httpx.AsyncClient:
    settings = {"public_url": PUBLIC_URL, "secret_key": SECRET, **overrides}
    return (await start_app(**settings)).client


async def run_waiting(
    client: httpx.AsyncClient, key: str, query: str = QUERY, **options: Any
) -> dict[str, Any]:
    body = {"query": query, "approvers": [APPROVER], **options}
    response = await client.post(f"/workflows/{key}/run/send", json=body)
    assert response.status_code == 202, response.text
    return await until_workflow(client, key, lambda s: s["status"] == "waiting")


def decision_seen(fake_llm: FakeLLM, query: str = QUERY) -> dict[str, Any]:
    """The request_approval call's result, as the model's second turn received it."""
    last = [call for call in fake_llm.calls if call["messages"][1]["content"] == query][-1]
    tool = [m["content"] for m in last["messages"] if m["role"] == "tool"]
    result: dict[str, Any] = json.loads(tool[0])
    return result


async def link_of(inbox: Inbox) -> str:
    (message,) = await inbox.wait_for(1)
    assert message["To"] == APPROVER
    text = plain_text(message)
    assert "May I deploy?" in text
    assert "v2.1" in text
    assert QUERY in text
    found = LINK.search(text)
    assert found is not None, text
    return found.group(1)


async def test_approval_by_the_link(
    start_app: StartApp, fake_llm: FakeLLM, inbox: Inbox, db: asyncpg.Connection
) -> None:
    script(fake_llm)
    client = await start(start_app)
    await run_waiting(client, "approve-me")
    row = await db.fetchrow("SELECT lease_owner, attempts FROM workflow WHERE key = 'approve-me'")
    assert row["lease_owner"] is None
    path = await link_of(inbox)

    page = await client.get(path)  # a GET decides nothing
    assert page.status_code == 200
    assert "May I deploy?" in page.text
    assert QUERY in page.text
    assert 'name="decision" value="approve"' in page.text
    assert "<script" not in page.text
    assert (await client.get("/workflows/approve-me")).json()["status"] == "waiting"
    pending = await client.get("/workflows/approve-me/output", params={"timeout": 0})
    assert pending.status_code == 202
    assert pending.json() == {"key": "approve-me", "status": "waiting"}

    decided = await client.post(path, data={"decision": "approve", "comment": "ship it"})
    assert decided.status_code == 200, decided.text
    assert "Approved by approver@example.com" in decided.text
    status = await until_workflow(client, "approve-me", lambda s: s["status"] == "succeeded")
    assert status["output"] == "finished after the decision"
    assert decision_seen(fake_llm) == {"approved": True, "comment": "ship it", "by": APPROVER}
    # The model's first turn ran once: the run went on from its journal.
    assert fake_llm.turn_calls(QUERY) == [1, 1]

    # The first decision wins; a second sees it.
    again = await client.post(path, data={"decision": "reject"})
    assert again.status_code == 409
    assert "already decided" in again.text
    assert "Approved" in again.text
    promise = (await client.get("/workflows/approve-me/promises/approval-1")).json()
    assert promise["state"] == "resolved"
    assert promise["value"]["approved"] is True


async def test_rejection_through_the_promise_endpoint(
    start_app: StartApp, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    script(fake_llm)
    client = await start(start_app)
    await run_waiting(client, "reject-me")
    rejected = await client.post(
        "/workflows/reject-me/promises/approval-1/reject", json={"error": "too risky"}
    )
    assert rejected.status_code == 200, rejected.text
    await until_workflow(client, "reject-me", lambda s: s["status"] == "succeeded")
    assert decision_seen(fake_llm) == {"approved": False, "comment": "too risky", "by": None}
    # The approver's link now shows the decision and changes nothing.
    path = await link_of(inbox)
    late = await client.post(path, data={"decision": "approve"})
    assert late.status_code == 409
    assert "Rejected" in late.text


async def test_timeout(start_app: StartApp, fake_llm: FakeLLM, inbox: Inbox) -> None:
    script(fake_llm)
    client = await start(start_app, poll_interval_seconds=0.2)
    await run_waiting(client, "too-late", approval_timeout_seconds=0.5)
    await until_workflow(client, "too-late", lambda s: s["status"] == "succeeded")
    seen = decision_seen(fake_llm)
    assert seen["approved"] is False
    assert seen["timed_out"] is True
    path = await link_of(inbox)
    late = await client.post(path, data={"decision": "approve"})
    assert late.status_code == 409
    assert "Nobody decided in time" in late.text


async def test_forged_replayed_and_expired_tokens_are_refused(
    start_app: StartApp, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    script(fake_llm)
    client = await start(start_app)
    await run_waiting(client, "guarded")
    path = await link_of(inbox)
    token = path.rsplit("/", 1)[1]
    payload, _, signature = token.partition(".")
    subscription_id = (await client.get("/workflows/guarded")).json()["subscriptions"][0]["id"]
    signer = Signer.from_secret(SECRET)
    later = datetime.now(UTC) + timedelta(days=1)
    refused = [
        f"{payload}.{signature[::-1]}",  # forged signature
        f"{payload}x.{signature}",  # changed payload
        # An unsubscribe link of the same subscription, replayed as an approval.
        signer.sign(UNSUBSCRIBE, uuid.UUID(subscription_id), expires_at=later),
        # Made by another key.
        Signer(b"k" * 32).sign(APPROVAL, uuid.UUID(subscription_id), expires_at=later),
        # Expired.
        signer.sign(
            APPROVAL, uuid.UUID(subscription_id), expires_at=datetime.now(UTC) - timedelta(1)
        ),
    ]
    for bad in refused:
        for response in (
            await client.get(f"/approvals/{bad}"),
            await client.post(f"/approvals/{bad}", data={"decision": "approve"}),
        ):
            assert response.status_code == 403, (bad, response.text)
    assert (await client.get("/workflows/guarded")).json()["status"] == "waiting"
    # The approval link is worth nothing as an unsubscribe link either.
    assert (await client.post(f"/unsubscribe/{token}")).status_code == 403
    # Not a choice: nothing decided.
    assert (await client.post(path, data={"decision": "maybe"})).status_code == 422


async def test_waiting_runs_hold_no_runner_slot(
    start_app: StartApp, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    script(fake_llm)
    client = await start(start_app, runner_concurrency=4)
    keys = [f"wait-{n}" for n in range(100)]
    for key in keys:
        body = {"query": QUERY, "approvers": [APPROVER]}
        assert (await client.post(f"/workflows/{key}/run/send", json=body)).status_code == 202

    async def waiting() -> int:
        page = (await client.get("/workflows", params={"status": "waiting", "limit": 200})).json()
        return len(page["items"])

    await eventually(waiting, lambda count: count == 100, timeout=60)
    # With 100 runs waiting and 4 slots, a new run still executes.
    response = await client.post("/workflows/plain/run", json="no approval needed")
    assert response.status_code == 200, response.text
    # Every decision lets its run finish.
    for key in keys:
        resolved = await client.post(
            f"/workflows/{key}/promises/approval-1/resolve", json={"value": {"approved": True}}
        )
        assert resolved.status_code == 200
    for key in keys:
        await until_workflow(client, key, lambda s: s["status"] == "succeeded", timeout=60)


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def test_approvers_are_checked_like_subscribers(start_app: StartApp) -> None:
    client = await start(start_app)
    for approvers, code in (
        (["not-an-address"], "invalid_email"),
        ([{"webhook": {"url": "http://127.0.0.1:9/hook", "secret": SECRET}}], "target_not_allowed"),
        # No secret: the run's answer could not show a generated one.
        ([{"webhook": "https://hooks.example.com/approve"}], "invalid_request"),
        ([{"email": APPROVER, "promise": "other"}], "invalid_request"),
    ):
        response = await client.post(
            "/workflows/checked/run/send", json={"query": QUERY, "approvers": approvers}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code


async def test_the_offline_model_asks_for_approval_when_the_query_does(
    start_app: StartApp, inbox: Inbox
) -> None:
    client = await start(start_app, agent_model=None, agent_api_base=None)
    query = "Publish the release notes, with approval"
    await run_waiting(client, "offline-approval", query=query)
    steps = (await client.get("/workflows/offline-approval/steps")).json()["items"]
    assert [(s["kind"], s["name"], s["status"]) for s in steps][1] == (
        "tool",
        "request_approval",
        "running",
    )
    path = await link_of_offline(inbox)
    assert (
        await client.post(path, data={"decision": "approve", "comment": "go"})
    ).status_code == 200
    status = await until_workflow(client, "offline-approval", lambda s: s["status"] == "succeeded")
    assert status["output"].startswith("[offline model] Approved by approver@example.com (go).")


async def link_of_offline(inbox: Inbox) -> str:
    (message,) = await inbox.wait_for(1)
    found = LINK.search(plain_text(message))
    assert found is not None
    return found.group(1)


async def test_a_waiting_run_can_be_cancelled(
    start_app: StartApp, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    script(fake_llm)
    client = await start(start_app)
    await run_waiting(client, "cancel-me")
    cancelled = await client.post("/workflows/cancel-me/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    # A decision afterwards changes nothing for the run.
    path = await link_of(inbox)
    assert (await client.post(path, data={"decision": "approve"})).status_code == 200
    status = await until_workflow(client, "cancel-me", lambda s: s["status"] == "cancelled")
    assert status["output"] is None
