"""kill -9 of the service while a run waits for a person: nothing holds the run (no process,
no lease), so a new process takes the decision by the approver's link and the run goes on from
its journal — the model's first turn is not sent again."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls
from tests.fakes.smtp import Inbox
from tests.helpers import plain_text, until_workflow
from tests.service import ServiceProcess

StartService = Callable[..., Awaitable[ServiceProcess]]
PUBLIC_URL = "https://agent.example.test"
SETTINGS = {
    "lease_seconds": 2.0,
    "poll_interval_seconds": 0.2,
    "public_url": PUBLIC_URL,
    "secret_key": "approval-crash-secret",
}


async def test_approval_by_the_link_after_kill_9_while_waiting(
    start_service: StartService, fake_llm: FakeLLM, inbox: Inbox
) -> None:
    query = "ship it after a kill"
    fake_llm.script_turns(
        query,
        ToolCalls(Call("request_approval", {"question": "Ship?"})),
        Text("shipped"),
    )
    first = await start_service(**SETTINGS)
    async with first.client() as client:
        body = {"query": query, "approvers": ["boss@example.com"]}
        assert (await client.post("/workflows/crashy/run/send", json=body)).status_code == 202
        await until_workflow(client, "crashy", lambda s: s["status"] == "waiting", timeout=30)
    (message,) = await inbox.wait_for(1, timeout=30)
    await first.kill()

    found = re.search(re.escape(PUBLIC_URL) + r"(/approvals/\S+)", plain_text(message))
    assert found is not None
    second = await start_service(**SETTINGS)
    async with second.client() as client:
        assert (await client.get("/workflows/crashy")).json()["status"] == "waiting"
        decided = await client.post(found.group(1), data={"decision": "approve"})
        assert decided.status_code == 200, decided.text
        status = await until_workflow(
            client, "crashy", lambda s: s["status"] == "succeeded", timeout=30
        )
    assert status["output"] == "shipped"
    assert fake_llm.turn_calls(query) == [1, 1]
