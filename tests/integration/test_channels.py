"""Subscribers on other channels: signed webhooks and Apprise URLs, delivered by the same
machinery as emails, and the address guard in front of both. Traffic goes to 127.0.0.1 only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM
from tests.fakes.webhooks import Receiver
from tests.helpers import until_workflow

LOCAL = {"webhook_allowed_networks": "127.0.0.0/8"}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def subscription_is(status: str) -> Callable[[dict[str, Any]], bool]:
    def check(workflow: dict[str, Any]) -> bool:
        subscriptions = workflow["subscriptions"]
        return bool(subscriptions) and subscriptions[0]["status"] == status

    return check


async def test_a_webhook_is_signed_retried_with_one_id_and_sent_once(
    start_app: Callable[..., Awaitable[RunningApp]], receiver: Receiver
) -> None:
    client = (await start_app(**LOCAL)).client
    receiver.answer(500, 500)
    subscribed = await client.post(
        "/workflows/hook-1/on_notify/send", json={"webhook": receiver.url()}
    )
    assert subscribed.status_code == 202, subscribed.text
    answer = subscribed.json()
    secret = answer["secret"]
    assert secret.startswith("whsec_")
    assert answer["channel"] == "webhook"
    assert answer["target"] == f"http://127.0.0.1:{receiver.port}/…"
    await client.post("/workflows/hook-1/run/send", json="Say hi")
    workflow = await until_workflow(client, "hook-1", subscription_is("sent"))
    received = await receiver.wait_for(3)
    assert len(received) == 3
    assert {r.headers["webhook-id"] for r in received} == {answer["webhook_id"]}
    event = Webhook(secret).verify(received[-1].body, received[-1].headers)
    assert event["type"] == "workflow.succeeded"
    assert event["data"] == {
        "key": "hook-1",
        "status": "succeeded",
        "output": "Answer to: Say hi",
        "error": None,
    }
    # A forged signature does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 32).verify(received[-1].body, received[-1].headers)
    # The secret is answered once: never by GET, nor on the second subscription.
    shown = json.dumps(workflow)
    assert secret not in shown
    assert "secret" not in workflow["subscriptions"][0]
    again = await client.post("/workflows/hook-1/on_notify/send", json={"webhook": receiver.url()})
    assert again.json()["secret"] is None
    assert again.json()["id"] == answer["id"]


async def test_a_webhook_with_its_own_secret_and_a_410_stops(
    start_app: Callable[..., Awaitable[RunningApp]], receiver: Receiver
) -> None:
    client = (await start_app(**LOCAL)).client
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    await client.post("/workflows/hook-2/run", json="Say hi")
    receiver.answer(410)
    answer = await client.post(
        "/workflows/hook-2/on_notify",
        json={"webhook": {"url": receiver.url("/gone?token=t0p"), "secret": secret}},
    )
    assert answer.status_code == 424, answer.text
    assert "410" in answer.json()["error"]["message"]
    assert "t0p" not in answer.text
    received = await receiver.wait_for(1)
    assert len(received) == 1
    Webhook(secret).verify(received[0].body, received[0].headers)
    workflow = await until_workflow(client, "hook-2", subscription_is("failed"))
    assert "410" in workflow["subscriptions"][0]["last_error"]
    assert "t0p" not in json.dumps(workflow)


async def test_a_failed_task_is_told_to_its_webhook(
    start_app: Callable[..., Awaitable[RunningApp]], receiver: Receiver, fake_llm: FakeLLM
) -> None:
    client = (await start_app(**LOCAL)).client
    fake_llm.fail("Fail me", 400)
    await client.post("/workflows/hook-3/on_notify/send", json={"webhook": receiver.url()})
    await client.post("/workflows/hook-3/run/send", json="Fail me")
    await until_workflow(client, "hook-3", subscription_is("sent"))
    event = json.loads((await receiver.wait_for(1))[0].body)
    assert event["type"] == "workflow.failed"
    assert event["data"]["status"] == "failed"
    assert event["data"]["output"] is None
    assert event["data"]["error"]


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://localhost:9/hook", "loopback"),
        ("http://[::1]:9/hook", "loopback"),
    ],
)
async def test_non_public_targets_are_refused_at_subscription(
    client: httpx.AsyncClient, db: asyncpg.Connection, target: str, kind: str
) -> None:
    for body in ({"webhook": target}, {"apprise": target.replace("http://", "json://")}):
        answer = await client.post("/workflows/guarded/on_notify/send", json=body)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "target_not_allowed"
        assert kind in error["message"]
        assert "WEBHOOK_ALLOWED_NETWORKS" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM subscription") == 0


async def test_a_target_no_longer_allowed_is_not_sent_at_delivery(
    start_app: Callable[..., Awaitable[RunningApp]],
    receiver: Receiver,
    db: asyncpg.Connection,
) -> None:
    """Subscribed while allowed; at delivery the guard checks again (as after a DNS change) and
    nothing is sent."""
    first = await start_app(**LOCAL)
    for key, body in (
        ("later-1", {"webhook": receiver.url().replace("127.0.0.1", "localhost")}),
        ("later-2", {"apprise": receiver.url().replace("http://", "json://")}),
    ):
        answer = await first.client.post(f"/workflows/{key}/on_notify/send", json=body)
        assert answer.status_code == 202, answer.text
    await first.stop()
    second = await start_app()
    for key in ("later-1", "later-2"):
        await second.client.post(f"/workflows/{key}/run/send", json="Say hi")
        workflow = await until_workflow(second.client, key, subscription_is("failed"))
        assert "loopback" in workflow["subscriptions"][0]["last_error"]
    assert receiver.received == []


async def test_an_apprise_url_is_notified(
    start_app: Callable[..., Awaitable[RunningApp]], receiver: Receiver
) -> None:
    client = (await start_app(**LOCAL)).client
    target = receiver.url("/apprise").replace("http://", "json://") + "?token=s3cret"
    answer = await client.post("/workflows/chat-1/on_notify/send", json={"apprise": target})
    assert answer.status_code == 202, answer.text
    await client.post("/workflows/chat-1/run/send", json="Say hi")
    workflow = await until_workflow(client, "chat-1", subscription_is("sent"))
    assert workflow["subscriptions"][0]["target"] == f"json://127.0.0.1:{receiver.port}/…"
    assert "s3cret" not in json.dumps(workflow)
    received = await receiver.wait_for(1)
    payload = json.loads(received[0].body)
    assert payload["message"] == "Answer to: Say hi"
    assert "chat-1" in payload["title"]


async def test_apprise_urls_apprise_does_not_know_are_refused(client: httpx.AsyncClient) -> None:
    answer = await client.post("/workflows/chat-2/on_notify/send", json={"apprise": "nope://x"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_target"
    both = await client.post(
        "/workflows/chat-2/on_notify/send",
        json={"email": "me@example.com", "webhook": "https://example.com/h"},
    )
    assert both.status_code == 422
