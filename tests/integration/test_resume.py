"""POST /workflows/{key}/resume: a failed run continues from its journal (finished steps are
not made again, the failed one is, limits read anew) and its subscribers hear the new outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApp
from tests.fakes.llm import Call, FakeLLM, Status, Text, ToolCalls
from tests.fakes.smtp import Inbox
from tests.fakes.tools import LOG_VARIABLE, recorded
from tests.helpers import eventually

StartApp = Callable[..., Awaitable[RunningApp]]
TOOLS = "tests.fakes.tools,app.agent.examples"


@pytest.fixture
def tool_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tool-calls.log"
    monkeypatch.setenv(LOG_VARIABLE, str(path))
    return path


@pytest.fixture
async def agent(start_app: StartApp, tool_log: Path) -> httpx.AsyncClient:
    return (await start_app(agent_tools=TOOLS)).client


async def finished(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    async def status() -> dict[str, Any]:
        body: dict[str, Any] = (await client.get(f"/workflows/{key}")).json()
        return body

    return await eventually(status, lambda s: s["status"] in {"succeeded", "failed"})


async def test_a_failed_run_resumes_from_its_journal_and_notifies_again(
    agent: httpx.AsyncClient, fake_llm: FakeLLM, inbox: Inbox, tool_log: Path
) -> None:
    query = "the key was wrong"
    # The second turn fails for good (a 401: the operator's key), then works once fixed.
    fake_llm.script_turns(
        query, ToolCalls(Call("record", {"label": "once"})), (Status(401), Text("done at last"))
    )
    subscribed = await agent.post("/workflows/fixed/on_notify/send", json="me@example.com")
    assert subscribed.status_code == 202
    assert (await agent.post("/workflows/fixed/run/send", json=query)).status_code == 202
    failed = await finished(agent, "fixed")
    assert failed["status"] == "failed"
    [failure_notice] = await inbox.wait_for(1)
    await eventually(
        lambda: agent.get("/workflows/fixed"),
        lambda r: r.json()["subscriptions"][0]["status"] == "sent",
    )

    response = await agent.post("/workflows/fixed/resume")
    assert response.status_code == 202, response.text
    assert response.json()["status"] in {"pending", "running", "succeeded"}
    done = await finished(agent, "fixed")
    assert done["status"] == "succeeded"
    assert done["output"] == "done at last"
    assert done["error"] is None
    assert done["promise"] == {**done["promise"], "state": "resolved", "value": "done at last"}

    # The first turn and the tool call were not made again; the failed turn was.
    assert fake_llm.turn_calls(query) == [1, 2]
    assert [label for label, _ in recorded(tool_log)] == ["once"]
    steps = (await agent.get("/workflows/fixed/steps")).json()["items"]
    assert [(s["kind"], s["status"], s["attempts"]) for s in steps] == [
        ("llm", "succeeded", 1),
        ("tool", "succeeded", 1),
        ("llm", "succeeded", 1),
    ]
    # The subscriber heard the failure, then the new outcome, under another Message-ID.
    first, second = await inbox.wait_for(2)
    assert first is failure_notice
    assert "done at last" in second.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert second["Message-ID"] != first["Message-ID"]
    await eventually(
        lambda: agent.get("/workflows/fixed"),
        lambda r: r.json()["subscriptions"][0]["status"] == "sent",
    )


async def test_a_run_past_max_steps_resumes_with_more_turns(
    agent: httpx.AsyncClient, fake_llm: FakeLLM, tool_log: Path
) -> None:
    query = "needs more turns"
    fake_llm.script_turns(
        query, ToolCalls(Call("record", {"label": "once"})), Text("enough turns now")
    )
    response = await agent.post("/workflows/short/run", json={"query": query, "max_steps": 1})
    assert response.status_code == 424
    assert "max_steps_exceeded" in response.json()["error"]["message"]

    too_many = await agent.post("/workflows/short/resume", json={"max_steps": 21})
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "max_steps_too_large"
    resumed = await agent.post("/workflows/short/resume", json={"max_steps": 3})
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["max_steps"] == 3
    output = await agent.get("/workflows/short/output", params={"timeout": 10})
    assert output.status_code == 200, output.text
    assert output.json()["output"] == "enough turns now"
    assert fake_llm.turn_calls(query) == [1, 1]
    assert [label for label, _ in recorded(tool_log)] == ["once"]


async def test_only_a_failed_run_resumes(agent: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    missing = await agent.post("/workflows/nobody/resume")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert (await agent.post("/workflows/fine/run", json="q")).status_code == 200
    conflict = await agent.post("/workflows/fine/resume", json={})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "not_failed"
    assert "is succeeded" in conflict.json()["error"]["message"]
    # The seed's path style too; an unknown field is refused.
    seed = await agent.post("/AsyncNotificationsAgent/fine/resume", json={"steps": 3})
    assert seed.status_code == 422
