"""The seed's story end to end, under both path styles, with early, running and late subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, plain_text, until_workflow

QUERY = "Write a 1000-word description of Durable Execution"


@pytest.mark.parametrize("prefix", ["/workflows", "/AsyncNotificationsAgent"])
async def test_seed_sequence_emails_the_answer(
    client: httpx.AsyncClient, inbox: Inbox, prefix: str
) -> None:
    accepted = await client.post(f"{prefix}/msg-123/run/send", json=QUERY)
    assert accepted.status_code == 202
    assert accepted.json() == {"key": "msg-123", "status": "accepted"}

    subscribed = await client.post(f"{prefix}/msg-123/on_notify/send", json="me@example.com")
    assert subscribed.status_code == 202
    body = subscribed.json()
    assert body["key"] == "msg-123"
    assert body["email"] == "me@example.com"
    assert body["status"] in {"waiting", "ready", "sent"}

    [message] = await inbox.wait_for(1)
    assert message["To"] == "me@example.com"
    assert message["Message-ID"] == body["message_id"]
    # Every header is the service's own but the validated recipient; the answer is the body.
    assert set(message.keys()) == {
        "From",
        "To",
        "Message-ID",
        "Date",
        "Auto-Submitted",
        "X-Agent-Notify-Key",
        "Subject",
        "Content-Type",  # multipart/alternative: the parts carry their own encodings
        "MIME-Version",
    }
    assert "msg-123" in message["Subject"]
    assert plain_text(message).strip() == answer_for(QUERY)

    status = await until_workflow(client, "msg-123", all_sent)
    assert status["status"] == "succeeded"
    assert status["output"] == answer_for(QUERY)
    assert status["promise"]["state"] == "resolved"
    assert status["promise"]["value"] == answer_for(QUERY)
    assert status["attempts"] == 1
    [subscription] = status["subscriptions"]
    assert subscription["id"] == body["id"]
    assert subscription["attempts"] == 1
    assert subscription["sent_at"] is not None


async def test_subscribers_before_during_and_after_the_run(
    client: httpx.AsyncClient, inbox: Inbox, fake_llm: FakeLLM
) -> None:
    release = fake_llm.hold(QUERY)

    early = await client.post("/workflows/k1/on_notify/send", json={"email": "early@example.com"})
    assert early.status_code == 202
    assert early.json()["status"] == "waiting"
    before = await client.get("/workflows/k1")
    assert before.status_code == 200
    assert before.json()["status"] is None  # subscribers may wait before any run exists
    assert before.json()["promise"]["state"] == "pending"

    assert (await client.post("/workflows/k1/run/send", json=QUERY)).status_code == 202
    await fake_llm.wait_for_calls(QUERY)
    during = await client.post("/workflows/k1/on_notify/send", json="during@example.com")
    assert during.json()["status"] == "waiting"
    running = await client.get("/workflows/k1")
    assert running.json()["status"] == "running"
    assert inbox.messages == []

    release.set()
    await inbox.wait_for(2)
    await until_workflow(client, "k1", all_sent)

    late = await client.post("/workflows/k1/on_notify/send", json="late@example.com")
    assert late.status_code == 202
    await inbox.wait_for(3)
    recipients = sorted(m["To"] for m in inbox.messages)
    assert recipients == ["during@example.com", "early@example.com", "late@example.com"]
    assert all(plain_text(m).strip() == answer_for(QUERY) for m in inbox.messages)
    assert fake_llm.calls_for(QUERY) == 1


async def test_late_subscriber_is_served_without_waiting_for_a_poll(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    # With a poll interval far longer than the test's deadline, only the hand-off can be in time.
    app = await start_app(poll_interval_seconds=60)
    result = await app.client.post("/workflows/late/run", json=QUERY)
    assert result.status_code == 200
    delivered = await app.client.post("/workflows/late/on_notify", json="late@example.com")
    assert delivered.status_code == 200
    assert delivered.json()["status"] == "sent"
    [message] = await inbox.wait_for(1, timeout=2)
    assert message["Message-ID"] == delivered.json()["message_id"]


async def test_sync_run_returns_the_output(client: httpx.AsyncClient) -> None:
    response = await client.post("/workflows/sync-1/run", json={"query": "hello"})
    assert response.status_code == 200
    assert response.json() == {
        "key": "sync-1",
        "status": "succeeded",
        "output": answer_for("hello"),
    }


async def test_sync_on_notify_waits_for_the_email(
    client: httpx.AsyncClient, inbox: Inbox, fake_llm: FakeLLM
) -> None:
    release = fake_llm.hold("slow")
    assert (await client.post("/workflows/s/run/send", json="slow")).status_code == 202
    await fake_llm.wait_for_calls("slow")

    waiting = asyncio.create_task(client.post("/workflows/s/on_notify", json="w@example.com"))
    await until_workflow(client, "s", lambda s: len(s["subscriptions"]) == 1)
    assert not waiting.done()  # subscribed, but the answer is not there yet
    release.set()
    response = await waiting
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "sent"
    [message] = inbox.messages
    assert message["Message-ID"] == body["message_id"]


async def test_outbox_when_no_smtp_is_configured(
    start_app: Callable[..., Awaitable[RunningApp]], tmp_path: Path
) -> None:
    app = await start_app(smtp_host=None, outbox_dir=tmp_path / "outbox")
    await app.client.post("/workflows/ob/run", json="via the outbox")
    response = await app.client.post("/workflows/ob/on_notify", json="reader@example.com")
    assert response.status_code == 200
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    text = files[0].read_text()
    assert "To: reader@example.com" in text
    assert response.json()["message_id"] in text
    assert answer_for("via the outbox") in text


async def test_docs_describe_every_endpoint(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for prefix in ("/workflows", "/AsyncNotificationsAgent"):
        assert f"{prefix}/{{key}}/run" in paths
        assert f"{prefix}/{{key}}/run/send" in paths
        assert f"{prefix}/{{key}}/on_notify" in paths
        assert f"{prefix}/{{key}}/on_notify/send" in paths
        assert f"{prefix}/{{key}}" in paths
    run_send = paths["/workflows/{key}/run/send"]["post"]
    assert "examples" in run_send["requestBody"]["content"]["application/json"]
    assert "202" in run_send["responses"]


async def test_offline_model_answers_when_no_llm_is_configured(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox, fake_llm: FakeLLM
) -> None:
    app = await start_app(agent_model=None, agent_api_base=None, agent_api_key=None)
    response = await app.client.post("/workflows/offline/run", json="hello offline")
    assert response.status_code == 200
    output = response.json()["output"]
    assert output.startswith("[offline model] You asked: hello offline")
    assert "AGENT_MODEL" in output  # it says how to configure a real one
    assert fake_llm.calls == []
    await app.client.post("/workflows/offline/on_notify", json="me@example.com")
    [message] = inbox.messages
    assert plain_text(message).replace("\r\n", "\n").strip() == output.strip()
