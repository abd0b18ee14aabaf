"""kill -9 of the service in the middle of a multi-step run: after a restart the run goes on
from its journal — the model turns that had finished are not sent again, and every tool call is
made exactly once; only the turn in flight at the crash runs again, under its step id."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls
from tests.fakes.tools import LOG_VARIABLE, recorded
from tests.helpers import until_workflow
from tests.service import ServiceProcess

StartService = Callable[..., Awaitable[ServiceProcess]]
FAST = {"lease_seconds": 2.0, "poll_interval_seconds": 0.2, "agent_tools": "tests.fakes.tools"}


async def test_kill_during_the_third_turn_of_a_four_turn_run(
    start_service: StartService, fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "tool-calls.log"
    monkeypatch.setenv(LOG_VARIABLE, str(log))
    query = "four turns"
    fake_llm.script_turns(
        query,
        ToolCalls(Call("record", {"label": "a"})),
        ToolCalls(Call("record", {"label": "b"}), Call("record", {"label": "c"})),
        ToolCalls(Call("record", {"label": "d"})),
        Text("all four turns done"),
    )
    release = fake_llm.hold_turn(query, 2)
    first = await start_service(**FAST)
    async with first.client() as client:
        assert (await client.post("/workflows/crash/run/send", json=query)).status_code == 202
    await fake_llm.wait_for_turn(query, 2, timeout=30)
    await first.kill()
    release.set()  # its answer goes to a process that no longer exists

    second = await start_service(**FAST)
    async with second.client() as client:
        status = await until_workflow(
            client, "crash", lambda s: s["status"] == "succeeded", timeout=30
        )
        steps = (await client.get("/workflows/crash/steps")).json()["items"]
    assert status["output"] == "all four turns done"
    # Turns 1 and 2 reached the model once; turn 3 twice (in flight at the kill); turn 4 once.
    assert fake_llm.turn_calls(query) == [1, 1, 2, 1]
    calls = recorded(log)
    assert Counter(label for label, _ in calls) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert [(s["seq"], s["kind"], s["attempts"]) for s in steps] == [
        (0, "llm", 1),
        (1, "tool", 1),
        (2, "llm", 1),
        (3, "tool", 1),
        (4, "tool", 1),
        (5, "llm", 2),
        (6, "tool", 1),
        (7, "llm", 1),
    ]
    # Each tool received its own step's id.
    ids = {step["seq"]: step["id"] for step in steps}
    assert dict(calls) == {"a": ids[1], "b": ids[3], "c": ids[4], "d": ids[6]}
