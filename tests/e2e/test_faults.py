"""Faults injected into real processes: the service runs as a child process and is killed,
terminated, cut off from Postgres, SMTP and the LLM. Nothing accepted is lost; an email is sent
twice only when the process died inside the send, and then with the same Message-ID."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, eventually, plain_text, samples, until_workflow
from tests.postgres import OwnPostgres
from tests.service import ServiceProcess, free_port

StartService = Callable[..., Awaitable[ServiceProcess]]
FAST = {"lease_seconds": 2.0, "poll_interval_seconds": 0.2}


async def post(service: ServiceProcess, path: str, body: object) -> httpx.Response:
    async with service.client() as client:
        return await client.post(path, json=body)


async def status_of(service: ServiceProcess, key: str, condition: Callable[..., bool]) -> dict:  # type: ignore[type-arg]
    async with service.client() as client:
        return await until_workflow(client, key, condition, timeout=30)


async def test_kill_during_the_llm_call(
    start_service: StartService, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    release = fake_llm.hold("crash in llm")
    first = await start_service(**FAST)
    assert (await post(first, "/workflows/c1/run/send", "crash in llm")).status_code == 202
    assert (await post(first, "/workflows/c1/on_notify/send", "a@example.com")).status_code == 202
    await fake_llm.wait_for_calls("crash in llm")
    await first.kill()
    release.set()

    second = await start_service(**FAST)
    [message] = await inbox.wait_for(1, timeout=30)
    assert plain_text(message).strip() == answer_for("crash in llm")
    status = await status_of(second, "c1", all_sent)
    assert status["attempts"] == 2
    # The LLM was called again only because the process died mid-call.
    assert fake_llm.calls_for("crash in llm") == 2


async def test_kill_after_the_promise_resolved_before_the_email(
    start_service: StartService, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    release = inbox.hold_before_accepting("a@example.com")
    first = await start_service(**FAST)
    await post(first, "/workflows/c2/on_notify/send", "a@example.com")
    await post(first, "/workflows/c2/run/send", "resolved then crash")
    await inbox.wait_for_arrival("a@example.com")  # resolved, and the send has begun
    await first.kill()
    release.set()

    second = await start_service(**FAST)
    status = await status_of(second, "c2", all_sent)
    assert status["status"] == "succeeded"
    assert [m["To"] for m in inbox.messages] == ["a@example.com"]
    assert fake_llm.calls_for("resolved then crash") == 1


async def test_kill_during_the_smtp_send_resends_with_the_same_message_id(
    start_service: StartService, inbox: Inbox
) -> None:
    release = inbox.hold_after_storing("a@example.com")
    first = await start_service(**FAST)
    await post(first, "/workflows/c3/run/send", "crash in smtp")
    subscribed = await post(first, "/workflows/c3/on_notify/send", "a@example.com")
    await inbox.wait_for(1)  # the server has the message; the client has no 250 yet
    await first.kill()
    release.set()

    second = await start_service(**FAST)
    await status_of(second, "c3", all_sent)
    assert len(inbox.messages) == 2
    ids = {m["Message-ID"] for m in inbox.messages}
    assert ids == {subscribed.json()["message_id"]}


async def test_postgres_restart_while_the_service_runs(
    start_service: StartService, fake_llm: FakeLLM, inbox: Inbox, tmp_path: Path
) -> None:
    postgres = OwnPostgres(tmp_path / "own-pg")
    try:
        release = fake_llm.hold("across a restart")
        service = await start_service(
            database_url=postgres.url, lease_seconds=5.0, poll_interval_seconds=0.2
        )
        await post(service, "/workflows/pg/run/send", "across a restart")
        await post(service, "/workflows/pg/on_notify/send", "a@example.com")
        await fake_llm.wait_for_calls("across a restart")

        await asyncio.to_thread(postgres.stop)
        async with service.client() as client:
            during = await client.get("/workflows/pg")
            assert during.status_code == 503
            assert during.json()["error"]["code"] == "database_unavailable"
            assert (await client.get("/readyz")).status_code == 503
        release.set()  # the answer arrives while Postgres is down
        await asyncio.to_thread(postgres.start)

        [message] = await inbox.wait_for(1, timeout=30)
        assert plain_text(message).strip() == answer_for("across a restart")
        await post(service, "/workflows/pg2/run/send", "after the restart")
        await post(service, "/workflows/pg2/on_notify/send", "b@example.com")
        await inbox.wait_for(2, timeout=30)
        async with service.client() as client:
            await eventually(
                lambda: client.get("/readyz"), lambda r: r.status_code == 200, timeout=30
            )
        assert service.running  # never restarted
        assert fake_llm.calls_for("across a restart") == 1
    finally:
        await asyncio.to_thread(postgres.close)


@pytest.fixture
async def late_inbox() -> AsyncIterator[Inbox]:
    inbox = Inbox()
    try:
        yield inbox
    finally:
        await inbox.stop()


async def test_smtp_outage_then_recovery_and_a_550(
    start_service: StartService, late_inbox: Inbox
) -> None:
    port = free_port()
    service = await start_service(
        smtp_port=port,
        retry_initial_seconds=0.1,
        retry_max_seconds=0.3,
        retry_max_attempts=1000,
        **FAST,
    )
    await post(service, "/workflows/smtp/run", "q")
    for email in ("a@example.com", "b@example.com", "gone@example.com"):
        await post(service, "/workflows/smtp/on_notify/send", email)
    # Connection refused, again and again: recorded, retried, nothing given up.
    await status_of(
        service,
        "smtp",
        lambda s: all(
            sub["attempts"] >= 2 and sub["status"] == "ready" for sub in s["subscriptions"]
        ),
    )
    late_inbox.reply("gone@example.com", "550 5.1.1 mailbox unavailable")
    await late_inbox.start(port)

    status = await status_of(
        service,
        "smtp",
        lambda s: all(sub["status"] in {"sent", "failed"} for sub in s["subscriptions"]),
    )
    outcome = {sub["email"]: sub["status"] for sub in status["subscriptions"]}
    assert outcome == {
        "a@example.com": "sent",
        "b@example.com": "sent",
        "gone@example.com": "failed",
    }
    [gone] = [sub for sub in status["subscriptions"] if sub["email"] == "gone@example.com"]
    assert "550 5.1.1 mailbox unavailable" in gone["last_error"]
    assert sorted(m["To"] for m in late_inbox.messages) == ["a@example.com", "b@example.com"]


async def test_llm_errors_retried_or_failed_at_once(
    start_service: StartService, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    fake_llm.fail("flaky", 500, 500, 429)
    fake_llm.fail("denied", 401)
    service = await start_service(**FAST)
    await post(service, "/workflows/flaky/on_notify/send", "a@example.com")
    await post(service, "/workflows/denied/on_notify/send", "b@example.com")
    assert (await post(service, "/workflows/flaky/run", "flaky")).status_code == 200
    denied = await post(service, "/workflows/denied/run", "denied")
    assert denied.status_code == 424
    assert "AuthenticationError" in denied.json()["error"]["message"]

    flaky = await status_of(service, "flaky", all_sent)
    assert (flaky["status"], flaky["attempts"]) == ("succeeded", 4)
    failed = await status_of(service, "denied", all_sent)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["promise"]["state"] == "rejected"
    assert fake_llm.calls_for("denied") == 1
    notices = {m["To"]: m for m in await inbox.wait_for(2)}
    assert plain_text(notices["a@example.com"]).strip() == answer_for("flaky")
    assert "could not be completed" in plain_text(notices["b@example.com"])
    assert "AuthenticationError" not in plain_text(notices["b@example.com"])


async def test_three_replicas_share_the_work(
    start_service: StartService, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    # Leases of a few seconds: under this load a 2-second lease is on the edge of lapsing
    # while a loaded replica still works on it, and lapsing is what makes duplicates.
    replicas = await asyncio.gather(
        *(
            start_service(lease_seconds=5.0, poll_interval_seconds=0.5, subscribe_rate_per_minute=0)
            for _ in range(3)
        )
    )
    clients = [replica.client() for replica in replicas]
    workflows = 150
    limit = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with limit:
            # Run on one replica, subscribe through the other two.
            run = await clients[i % 3].post(f"/workflows/r{i}/run/send", json=f"query {i}")
            assert run.status_code == 202
            for offset in (1, 2):
                client = clients[(i + offset) % 3]
                subscribed = await client.post(
                    f"/workflows/r{i}/on_notify/send", json=f"s{offset}-{i}@example.com"
                )
                assert subscribed.status_code == 202

    async def figures() -> list[tuple[float, float]]:
        per_replica = []
        for client in clients:
            figures = samples((await client.get("/metrics")).text)
            runs = figures[("agent_notify_runs_finished_total", (("outcome", "succeeded"),))]
            sent = figures.get(("agent_notify_emails_total", (("outcome", "sent"),)), 0.0)
            per_replica.append((runs, sent))
        return per_replica

    try:
        await asyncio.gather(*(one(i) for i in range(workflows)))
        await inbox.wait_for(2 * workflows, timeout=120)
        # The count of a send follows its acceptance by the server by a commit.
        per_replica = await eventually(
            figures, lambda rows: sum(sent for _, sent in rows) == 2 * workflows
        )
    finally:
        for client in clients:
            await client.aclose()

    recipients = Counter(m["To"] for m in inbox.messages)
    assert len(recipients) == 2 * workflows

    assert set(recipients.values()) == {1}
    assert len({m["Message-ID"] for m in inbox.messages}) == 2 * workflows
    assert len(fake_llm.calls) == workflows
    assert sum(runs for runs, _ in per_replica) == workflows
    assert all(runs > 0 and sent > 0 for runs, sent in per_replica), per_replica


async def test_sigterm_finishes_in_flight_work_within_the_grace_period(
    start_service: StartService, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    service = await start_service(shutdown_grace_seconds=10.0, **FAST)
    release = fake_llm.hold("finish me")
    await post(service, "/workflows/t1/on_notify/send", "a@example.com")
    await post(service, "/workflows/t1/run/send", "finish me")
    await fake_llm.wait_for_calls("finish me")
    assert service.process is not None
    service.process.send_signal(15)
    await asyncio.sleep(0.3)
    release.set()
    assert await service.terminate() == 0
    assert [m["To"] for m in inbox.messages] == ["a@example.com"]
    assert fake_llm.calls_for("finish me") == 1


async def test_sigterm_hands_back_what_cannot_finish_in_time(
    start_service: StartService, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    # A lease far longer than the test: only the hand-back lets the next process take over.
    slow = {"lease_seconds": 300.0, "poll_interval_seconds": 0.2, "shutdown_grace_seconds": 1.0}
    first = await start_service(**slow)
    releases = [fake_llm.hold(f"stuck {i}") for i in range(3)]
    for i in range(3):
        await post(first, f"/workflows/t{i}/run/send", f"stuck {i}")
        await post(first, f"/workflows/t{i}/on_notify/send", f"u{i}@example.com")
    for i in range(3):
        await fake_llm.wait_for_calls(f"stuck {i}")
    # The model calls are held until after the exit: only the hand-back lets it exit at all.
    assert await first.terminate() == 0
    for release in releases:
        release.set()

    second = await start_service(**slow)
    await inbox.wait_for(3, timeout=30)
    for i in range(3):
        status = await status_of(second, f"t{i}", all_sent)
        assert status["status"] == "succeeded"
        assert fake_llm.calls_for(f"stuck {i}") == 2
