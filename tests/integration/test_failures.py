"""LLM and SMTP errors: transient ones are retried, permanent ones fail with the reason recorded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from app.agent import AgentLoop, AgentRun, Journal, ModelGate, Outcome
from app.config import Settings
from app.errors import PermanentError, TransientError
from app.llm import Agent, ModelClient
from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import plain_text, until_workflow


def finished(status: dict[str, object]) -> bool:
    return status["status"] in {"succeeded", "failed", "cancelled"}


async def test_transient_llm_errors_are_retried(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    fake_llm.fail("flaky", 429, 503)
    response = await client.post("/workflows/flaky/run", json="flaky")
    assert response.status_code == 200
    assert response.json()["output"] == answer_for("flaky")
    assert fake_llm.calls_for("flaky") == 3
    status = await until_workflow(client, "flaky", finished)
    assert status["attempts"] == 3
    assert status["error"] is None


async def test_permanent_llm_error_fails_the_workflow_and_tells_subscribers(
    client: httpx.AsyncClient, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    fake_llm.fail("bad request", 400)
    await client.post("/workflows/bad/on_notify/send", json="early@example.com")
    response = await client.post("/workflows/bad/run", json="bad request")
    assert response.status_code == 424
    error = response.json()["error"]
    assert error["code"] == "workflow_failed"
    assert "BadRequestError" in error["message"]
    assert fake_llm.calls_for("bad request") == 1

    [message] = await inbox.wait_for(1)
    assert "failed" in message["Subject"]
    assert "Your agent task bad could not be completed." in plain_text(message)
    assert "BadRequestError" not in plain_text(message)
    status = await until_workflow(
        client, "bad", lambda s: s["subscriptions"][0]["status"] == "sent"
    )
    assert status["status"] == "failed"
    assert status["promise"]["state"] == "rejected"
    assert "BadRequestError" in status["promise"]["error"]


async def test_transient_llm_errors_give_up_after_the_maximum_attempts(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    fake_llm.fail("down", 500, 500, 500, 500, 500)
    response = await client.post("/workflows/down/run", json="down")
    assert response.status_code == 424
    assert "gave up after 4 attempts" in response.json()["error"]["message"]
    assert fake_llm.calls_for("down") == 4


async def test_a_bug_fails_the_run_at_once_with_the_reason(
    client: httpx.AsyncClient, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only provider, network and timeout errors are worth another attempt: anything else (a
    bug) fails the run on its first attempt, with the reason recorded."""
    run = AgentLoop.run

    async def broken(
        self: AgentLoop, agent_run: AgentRun, journal: Journal, gate: ModelGate | None = None
    ) -> Outcome:
        if agent_run.query == "bug":
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
        return await run(self, agent_run, journal, gate)

    monkeypatch.setattr(AgentLoop, "run", broken)
    response = await client.post("/workflows/bug/run", json="bug")
    assert response.status_code == 424
    status = (await client.get("/workflows/bug")).json()
    assert status["attempts"] == 1
    assert status["error"] == (
        "internal error: TypeError: unsupported operand type(s) for +: 'int' and 'str'"
    )
    assert (await client.post("/workflows/fine/run", json="fine")).status_code == 200


async def test_failure_emails_can_be_turned_off(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM, inbox: Inbox
) -> None:
    app = await start_app(notify_on_failure=False)
    fake_llm.fail("bad", 401)
    await app.client.post("/workflows/quiet/on_notify/send", json="early@example.com")
    assert (await app.client.post("/workflows/quiet/run", json="bad")).status_code == 424
    late = await app.client.post("/workflows/quiet/on_notify", json="late@example.com")
    assert late.status_code == 424
    assert late.json()["error"]["code"] == "delivery_failed"
    status = await until_workflow(app.client, "quiet", lambda s: len(s["subscriptions"]) == 2)
    assert {s["status"] for s in status["subscriptions"]} == {"failed"}
    assert all("NOTIFY_ON_FAILURE" in s["last_error"] for s in status["subscriptions"])
    assert inbox.messages == []


async def test_smtp_4xx_is_retried(client: httpx.AsyncClient, inbox: Inbox) -> None:
    inbox.reply("busy@example.com", "451 4.3.0 try again later")
    await client.post("/workflows/smtp/run", json="q")
    response = await client.post("/workflows/smtp/on_notify", json="busy@example.com")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["attempts"]) == ("sent", 2)
    [message] = inbox.messages
    assert message["Message-ID"] == body["message_id"]


async def test_a_resend_after_an_unclear_failure_carries_the_same_message_id(
    client: httpx.AsyncClient, inbox: Inbox
) -> None:
    # The server stores the message but answers 451: the client must send it again, and the
    # receiver can tell the two copies are one message.
    inbox.reply_after_storing("twice@example.com", "451 4.3.0 try again later")
    await client.post("/workflows/smtp2/run", json="q")
    response = await client.post("/workflows/smtp2/on_notify", json="twice@example.com")
    assert response.status_code == 200
    assert response.json()["attempts"] == 2
    assert [m["Message-ID"] for m in inbox.messages] == [response.json()["message_id"]] * 2


async def test_smtp_5xx_fails_the_subscription_with_the_reply(
    client: httpx.AsyncClient, inbox: Inbox
) -> None:
    inbox.reply("gone@example.com", "550 5.1.1 mailbox unavailable")
    await client.post("/workflows/smtp5/run", json="q")
    response = await client.post("/workflows/smtp5/on_notify", json="gone@example.com")
    assert response.status_code == 424
    assert "550" in response.json()["error"]["message"]
    status = await until_workflow(
        client, "smtp5", lambda s: s["subscriptions"][0]["status"] == "failed"
    )
    assert "mailbox unavailable" in status["subscriptions"][0]["last_error"]
    assert status["subscriptions"][0]["attempts"] == 1


async def test_unreachable_smtp_server_is_retried_then_given_up(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    # An SMTP port nobody listens on: connection refused on every attempt, then it gives up.
    app = await start_app(smtp_port=1)
    await app.client.post("/workflows/nosmtp/run", json="q")
    response = await app.client.post("/workflows/nosmtp/on_notify", json="x@example.com")
    assert response.status_code == 424
    status = await until_workflow(
        app.client, "nosmtp", lambda s: s["subscriptions"][0]["status"] == "failed"
    )
    [subscription] = status["subscriptions"]
    assert subscription["attempts"] == 4
    assert "gave up after 4 attempts" in subscription["last_error"]


async def test_subscribers_of_a_task_that_never_finishes_expire(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    app = await start_app(subscription_ttl_seconds=1.0)
    response = await app.client.post("/workflows/never/on_notify", json="patient@example.com")
    assert response.status_code == 424
    assert "expired" in response.json()["error"]["message"]
    status = await until_workflow(app.client, "never", lambda s: bool(s["subscriptions"]))
    [subscription] = status["subscriptions"]
    assert subscription["status"] == "expired"
    assert subscription["last_error"].startswith("expired: no result after waiting")
    assert inbox.messages == []


async def test_an_answer_postgres_cannot_store_is_cleaned_not_paid_for_again(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    fake_llm.answers["odd"] = "half an emoji \ud83d and a NUL \x00 here"
    response = await client.post("/workflows/odd/run", json="odd")
    assert response.status_code == 200
    assert response.json()["output"] == "half an emoji ? and a NUL  here"
    assert fake_llm.calls_for("odd") == 1


async def test_an_expired_subscriber_can_subscribe_again(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    app = await start_app(subscription_ttl_seconds=0.5)
    first = await app.client.post("/workflows/again/on_notify/send", json="me@example.com")
    await until_workflow(
        app.client, "again", lambda s: s["subscriptions"][0]["status"] == "expired"
    )
    await app.client.post("/workflows/again/run", json="q")
    again = await app.client.post("/workflows/again/on_notify", json="me@example.com")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "sent"
    [message] = inbox.messages
    assert message["Message-ID"] == first.json()["message_id"]


async def test_aiohttp_openai_errors_are_sorted_by_their_real_status(fake_llm: FakeLLM) -> None:
    """litellm's aiohttp_openai/ provider reports every HTTP error as a 500; the agent finds the
    real status, so a 400 fails at once instead of being retried. Its deadline holds too,
    though that provider drops litellm's `timeout`. (One test: litellm keeps that provider's
    aiohttp session for the first event loop that used it.)"""
    settings = Settings(
        agent_model="aiohttp_openai/fake-model", agent_api_base=fake_llm.url, agent_api_key="k"
    )
    # A process's first call on this provider imports much of litellm: the short deadline is
    # only for the held call.
    agent = Agent(ModelClient(settings))
    assert await agent.answer("fine", model=None, instructions=None) == answer_for("fine")
    expected = {400: PermanentError, 401: PermanentError, 404: PermanentError}
    expected |= {429: TransientError, 500: TransientError, 503: TransientError}
    for status, error in expected.items():
        fake_llm.fail(f"status {status}", status)
        with pytest.raises(error, match=f"InternalServerError|{status}"):
            await agent.answer(f"status {status}", model=None, instructions=None)
        assert fake_llm.calls_for(f"status {status}") == 1
    fake_llm.hold("slow")
    hasty = Agent(ModelClient(settings.model_copy(update={"agent_timeout_seconds": 0.5})))
    with pytest.raises(TransientError, match=r"no answer within 0\.5 s"):
        await hasty.answer("slow", model=None, instructions=None)


async def test_an_email_sent_but_not_recorded_is_sent_again_not_failed(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    """Recording `sent` fails for a reason that is not an outage: the subscription is not
    marked failed (the email went out); its lease lapses and the email goes again, with the
    same Message-ID."""
    app = await start_app(lease_seconds=1.0, poll_interval_seconds=0.2)
    subscriptions = app.app.state.process.store.subscriptions
    mark_sent = subscriptions.mark_sent
    failures = [RuntimeError("a bug in recording")] * 2  # the batch, then the single retry

    async def failing_once(ids: object) -> object:
        if failures:
            raise failures.pop()
        return await mark_sent(ids)

    subscriptions.mark_sent = failing_once
    await app.client.post("/workflows/rec/run", json="q")
    await app.client.post("/workflows/rec/on_notify/send", json="a@example.com")
    status = await until_workflow(
        app.client, "rec", lambda s: s["subscriptions"][0]["status"] == "sent", timeout=20
    )
    first, again = await inbox.wait_for(2)
    assert first["Message-ID"] == again["Message-ID"] == status["subscriptions"][0]["message_id"]
    assert status["subscriptions"][0]["attempts"] == 2
