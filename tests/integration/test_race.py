"""No lost wake-up: subscribers racing the promise's resolution each get exactly one email."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, plain_text, until_workflow

SUBSCRIBERS = 50


@pytest.mark.parametrize("round_", range(5))
async def test_concurrent_subscribers_while_the_run_resolves(
    client: httpx.AsyncClient, inbox: Inbox, fake_llm: FakeLLM, round_: int
) -> None:
    key = f"race-{round_}"
    query = f"race query {round_}"
    release = fake_llm.hold(query)
    assert (await client.post(f"/workflows/{key}/run/send", json=query)).status_code == 202
    await fake_llm.wait_for_calls(query)

    emails = [f"user{i}@example.com" for i in range(SUBSCRIBERS)]

    async def subscribe(email: str) -> httpx.Response:
        return await client.post(f"/workflows/{key}/on_notify/send", json=email)

    # The answer is released once a few subscriptions have committed, with the rest in flight:
    # some commit before the resolution, some after, some contend for the promise row with it.
    tasks = [asyncio.create_task(subscribe(email)) for email in emails]
    for _, done in zip(range(SUBSCRIBERS // 5), asyncio.as_completed(tasks), strict=False):
        await done
    release.set()
    responses = await asyncio.gather(*tasks)
    assert {r.status_code for r in responses} == {202}
    states = Counter(r.json()["status"] for r in responses)
    assert states["waiting"] >= SUBSCRIBERS // 5
    assert set(states) <= {"waiting", "ready", "sent"}

    await inbox.wait_for(SUBSCRIBERS)
    status = await until_workflow(client, key, all_sent)
    assert len(status["subscriptions"]) == SUBSCRIBERS
    # Every subscription is sent and nothing is in flight: no further email can come.
    received = Counter(m["To"] for m in inbox.messages)
    assert received == Counter(emails)
    assert all(plain_text(m).strip() == answer_for(query) for m in inbox.messages)
    assert fake_llm.calls_for(query) == 1


async def test_a_sync_run_hears_a_cancel_made_just_after_its_insert(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    """Another replica cancels the run the moment its INSERT commits, before the sync request
    reads anything more: the request is answered at once (not at the next fallback poll),
    because it watched the key from before the insert."""
    worker = await start_app(poll_interval_seconds=60, lease_seconds=60)
    other = await start_app(poll_interval_seconds=60, lease_seconds=60)
    release = fake_llm.hold("q")
    process = worker.app.state.process
    runs = process.store.runs
    accept = runs.accept

    async def accept_then_cancel_elsewhere(*args: Any, **kwargs: Any) -> Any:
        accepted = await accept(*args, **kwargs)
        # The cancel's NOTIFY reaches this process before the request goes on.
        with process.listener.watch("k") as notified:
            assert (await other.client.post("/workflows/k/cancel")).status_code == 200
            await notified.wait()
        return accepted

    runs.accept = accept_then_cancel_elsewhere  # type: ignore[method-assign]
    try:
        # Well under the 60 s fallback poll: only the NOTIFY can answer it in time.
        response = await worker.client.post("/workflows/k/run", json="q", timeout=20)
    finally:
        release.set()
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "workflow_cancelled"
