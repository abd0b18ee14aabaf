"""The Python client (clients/python) against the real app: every endpoint, its errors as
exceptions with the service's code, the event stream, and the retries through a proxy that
answers 503 or loses answers. The blocking `Client` runs in a thread: the app serves in this
event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agent_notify_client import (
    Apprise,
    AsyncClient,
    BadRequest,
    ChannelSubscribed,
    Client,
    Conflict,
    Email,
    EmailSubscription,
    NoPendingApproval,
    NotFound,
    RunResult,
    Unauthorized,
    Unreachable,
    WaitTimedOut,
    Webhook,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowState,
)
from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.proxy import FlakyProxy
from tests.fakes.smtp import Inbox
from tests.fakes.webhooks import Receiver
from tests.helpers import eventually
from tests.service import free_port

StartApp = Callable[..., Awaitable[RunningApp]]
# Fast retries: the tests wait on conditions, never on the client's backoff.
FAST = {"retries": 3, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05}


@pytest.fixture
async def app(start_app: StartApp) -> RunningApp:
    return await start_app(webhook_allowed_networks="127.0.0.0/8")


@pytest.fixture
async def client(app: RunningApp) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(app.base_url, **FAST) as client:
        yield client


@pytest.fixture
async def proxy(app: RunningApp) -> AsyncIterator[FlakyProxy]:
    proxy = FlakyProxy(app.base_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def test_run_wait_status_steps_list_and_delete(client: AsyncClient) -> None:
    accepted = await client.run_send("c-1", "first question")
    assert accepted.status == "accepted"
    assert (await client.run_send("c-1", "first question")).status == "previously_accepted"
    result = await client.wait("c-1")
    assert result == RunResult(
        key="c-1", status=WorkflowState.SUCCEEDED, output=answer_for("first question")
    )
    for key in ("c-2", "other-1"):
        assert (await client.run(key, f"question {key}")).output == answer_for(f"question {key}")

    workflow = await client.status("c-1")
    assert workflow.status is WorkflowState.SUCCEEDED
    assert workflow.query == "first question"
    assert workflow.usage is not None
    steps = [step async for step in client.steps("c-1", page_size=1)]
    assert [(step.seq, step.kind) for step in steps] == [(0, "llm")]

    # One item a page: the iterator follows next_cursor through all of them.
    everything = [w.key async for w in client.workflows(page_size=1)]
    assert sorted(everything) == ["c-1", "c-2", "other-1"]
    prefixed = [w.key async for w in client.workflows(key_prefix="c-", page_size=1)]
    assert sorted(prefixed) == ["c-1", "c-2"]
    assert [w async for w in client.workflows(status="failed")] == []

    await client.delete("c-1")
    with pytest.raises(NotFound) as missing:
        await client.status("c-1")
    assert (missing.value.status, missing.value.code) == (404, "not_found")


async def test_every_subscriber_channel(
    app: RunningApp, receiver: Receiver, inbox: Inbox, fake_llm: FakeLLM
) -> None:
    apprise_url = receiver.url("/apprise").replace("http://", "json://")

    def subscribe_and_run() -> list[object]:
        with Client(app.base_url, **FAST) as client:
            answers: list[object] = [
                client.subscribe("subs", "bare@example.com"),
                client.subscribe("subs", Email("boxed@example.com")),
                client.subscribe("subs", Webhook(receiver.url())),
                client.subscribe("subs", Apprise(apprise_url)),
            ]
            answers.append(client.run("subs", "tell everyone").output)
            answers.append(client.subscribe("subs", "late@example.com", wait=True))
            return answers

    *subscribed, output, late = await asyncio.to_thread(subscribe_and_run)
    assert output == answer_for("tell everyone")
    bare, boxed, webhook, apprise = subscribed
    assert isinstance(bare, EmailSubscription)
    assert bare.email == "bare@example.com"
    assert isinstance(boxed, EmailSubscription)
    assert boxed.email == "boxed@example.com"
    assert isinstance(webhook, ChannelSubscribed)
    assert webhook.channel == "webhook"
    assert webhook.secret is not None
    assert webhook.secret.startswith("whsec_")
    assert isinstance(apprise, ChannelSubscribed)
    assert apprise.channel == "apprise"
    assert isinstance(late, EmailSubscription)
    assert late.status == "sent"
    await receiver.wait_for(2)
    await inbox.wait_for(3)


async def test_errors_carry_the_service_code_status_and_message(
    client: AsyncClient, fake_llm: FakeLLM
) -> None:
    with pytest.raises(BadRequest) as bad_key:
        await client.status("not a key!")
    assert (bad_key.value.status, bad_key.value.code) == (422, "invalid_key")

    await client.run("e-1", "one input")
    with pytest.raises(Conflict) as conflict:
        await client.run_send("e-1", "another input")
    assert conflict.value.code == "key_conflict"
    assert "different input" in conflict.value.message
    with pytest.raises(Conflict) as finished:
        await client.cancel("e-1")
    assert finished.value.code == "already_finished"

    fake_llm.fail("doomed", 401)
    await client.run_send("e-2", "doomed")
    with pytest.raises(WorkflowFailed) as failed:
        await client.wait("e-2")
    assert (failed.value.status, failed.value.code) == (424, "workflow_failed")

    release = fake_llm.hold("held")
    await client.run_send("e-3", "held")
    with pytest.raises(WaitTimedOut):
        await client.wait("e-3", timeout=0.05)
    cancelled = await client.cancel("e-3")
    assert cancelled.status is WorkflowState.CANCELLED
    with pytest.raises(WorkflowCancelled) as gone:
        await client.run("e-3", "held")
    assert gone.value.code == "workflow_cancelled"
    release.set()


async def test_promises_and_approvals(client: AsyncClient) -> None:
    await client.run("p-1", "anything")
    resolved = await client.resolve("p-1", "review", {"ok": True})
    assert (resolved.state, resolved.value) == ("resolved", {"ok": True})
    assert (await client.promise("p-1", "review")).value == {"ok": True}
    rejected = await client.reject("p-1", "audit", "not today")
    assert (rejected.state, rejected.error) == ("rejected", "not today")
    with pytest.raises(Conflict) as own:
        await client.resolve("p-1", "agent_response", "mine")
    assert own.value.code == "agent_promise"

    with pytest.raises(NoPendingApproval):  # the run asked for none
        await client.approve("p-1")
    approved = await client.approve("p-1", comment="fine", by="ops", promise="approval")
    assert approved.name == "approval"
    assert approved.value == {"approved": True, "comment": "fine", "by": "ops"}
    denied = await client.deny("p-1", promise="second-approval")
    assert denied.value == {"approved": False}
    with pytest.raises(NotFound):
        await client.approve("no-such-workflow")


async def test_resume_continues_a_failed_run_and_refuses_another(
    app: RunningApp, client: AsyncClient, fake_llm: FakeLLM
) -> None:
    if "/workflows/{key}/resume" not in app.app.openapi()["paths"]:
        pytest.skip("the service has no resume endpoint yet (issue 17)")
    fake_llm.fail("fails once", 401)
    await client.run_send("r-1", "fails once")
    with pytest.raises(WorkflowFailed):
        await client.wait("r-1")
    resumed = await client.resume("r-1")
    assert resumed.key == "r-1"
    assert (await client.wait("r-1")).output == answer_for("fails once")
    with pytest.raises(Conflict):
        await client.resume("r-1")


async def test_events_follow_a_run_to_its_end_across_a_dropped_stream(
    client: AsyncClient, proxy: FlakyProxy, fake_llm: FakeLLM
) -> None:
    release = fake_llm.hold("followed")
    await client.run_send("ev-1", "followed")
    await eventually(lambda: client.status("ev-1"), lambda w: w.status == "running")
    names: list[str] = []
    async with AsyncClient(proxy.url, **FAST) as through_proxy:
        # Refused once (503), then cut after its first event: the stream is opened again, and
        # the state it announces again is not told twice.
        proxy.fail("503", "cut")
        async for event in through_proxy.events("ev-1"):
            names.append(event.event)
            release.set()
    assert names[0] == "running"
    assert names[-1] == "succeeded"
    assert names.count("succeeded") == 1
    assert [r.status for r in proxy.requests] == [None, 200, 200]


async def test_a_post_retried_after_its_answer_was_lost_runs_once(
    proxy: FlakyProxy, fake_llm: FakeLLM
) -> None:
    def run() -> tuple[str, str]:
        with Client(proxy.url, **FAST) as client:
            proxy.fail("drop")
            output = client.run("once", "run me once").output
            proxy.fail("503", "503")
            second = client.run_send("once", "run me once").status
            # A DELETE whose answer was lost: its retry finds nothing, which is what was asked.
            proxy.fail("drop")
            client.delete("once")
            with pytest.raises(NotFound):
                client.status("once")
            return str(output), second

    output, second = await asyncio.to_thread(run)
    assert output == answer_for("run me once")
    assert fake_llm.calls_for("run me once") == 1
    first_try, retry, *later = proxy.requests[:-3]
    assert (first_try.path, first_try.status) == ("/workflows/once/run", 200)
    assert first_try.idempotency_key is not None
    assert retry.idempotency_key == first_try.idempotency_key
    # Another call is another key; its 503s are retried with it.
    assert [r.status for r in later] == [None, None, 202]
    assert len({r.idempotency_key for r in later}) == 1
    assert later[0].idempotency_key != first_try.idempotency_key
    assert second == "previously_accepted"


async def test_an_unreachable_service_is_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(url, retries=1, backoff_seconds=0.01) as client:
        with pytest.raises(Unreachable):
            await client.status("x")


async def test_the_token_comes_from_the_constructor_or_the_environment(
    start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_app(api_tokens="first-token,second-token")
    async with AsyncClient(app.base_url, **FAST) as anonymous:
        with pytest.raises(Unauthorized) as refused:
            await anonymous.run_send("t-1", "q")
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    async with AsyncClient(app.base_url, token="first-token", **FAST) as client:
        assert (await client.run_send("t-1", "q")).status == "accepted"
    monkeypatch.setenv("AGENT_NOTIFY_URL", app.base_url)
    monkeypatch.setenv("AGENT_NOTIFY_TOKEN", "second-token")
    async with AsyncClient(**FAST) as from_environment:
        assert (await from_environment.wait("t-1")).output == answer_for("q")
