"""kill -9 of a service whose queries go through PgBouncer in transaction mode (LISTEN and
migrations on the direct connection): the next process finishes what the dead one left."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, plain_text, until_workflow
from tests.service import ServiceProcess

StartService = Callable[..., Awaitable[ServiceProcess]]
FAST = {"lease_seconds": 2.0, "poll_interval_seconds": 0.2}


async def test_kill_during_the_llm_call_behind_the_pooler(
    start_service: StartService, pooled: dict[str, Any], fake_llm: FakeLLM, inbox: Inbox
) -> None:
    release = fake_llm.hold("crash behind the pooler")
    first = await start_service(**FAST, **pooled)
    async with first.client() as client:
        accepted = await client.post("/workflows/pk/run/send", json="crash behind the pooler")
        assert accepted.status_code == 202
        subscribed = await client.post("/workflows/pk/on_notify/send", json="a@example.com")
        assert subscribed.status_code == 202
    await fake_llm.wait_for_calls("crash behind the pooler")
    await first.kill()
    release.set()

    second = await start_service(**FAST, **pooled)
    [message] = await inbox.wait_for(1, timeout=30)
    assert plain_text(message).strip() == answer_for("crash behind the pooler")
    async with second.client() as client:
        status = await until_workflow(client, "pk", all_sent, timeout=30)
        late = await client.post("/workflows/pk/on_notify", json="late@example.com")
    assert status["attempts"] == 2
    assert fake_llm.calls_for("crash behind the pooler") == 2
    assert late.status_code == 200
    assert late.json()["status"] == "sent"
    log = second.log.read_text()
    assert "does not exist" not in log, log
    assert "Traceback" not in log, log
