"""kill -9 of the service in the middle of a multi-step run: after a restart — or, with two
replicas, once the killed one's lease expires and the other claims the run — the run goes on
from its journal: the model turns that had finished are not sent again, and every tool call is
made exactly once; only the turn in flight at the crash runs again, under its step id."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls
from tests.fakes.tools import LOG_VARIABLE, recorded
from tests.helpers import until_workflow
from tests.service import ServiceProcess

StartService = Callable[..., Awaitable[ServiceProcess]]
FAST = {"lease_seconds": 2.0, "poll_interval_seconds": 0.2, "agent_tools": "tests.fakes.tools"}


QUERY = "four turns"


def script_four_turns(fake_llm: FakeLLM) -> asyncio.Event:
    """Four turns, five tool calls; the third turn is held (the returned event releases it)."""
    fake_llm.script_turns(
        QUERY,
        ToolCalls(Call("record", {"label": "a"})),
        ToolCalls(Call("record", {"label": "b"}), Call("record", {"label": "c"})),
        ToolCalls(Call("record", {"label": "d"})),
        Text("all four turns done"),
    )
    return fake_llm.hold_turn(QUERY, 2)


async def check_resumed_from_the_journal(
    client: httpx.AsyncClient, key: str, fake_llm: FakeLLM, log: Path
) -> None:
    """The run finished from its journal: only the turn in flight at the kill ran twice."""
    status = await until_workflow(client, key, lambda s: s["status"] == "succeeded", timeout=30)
    steps = (await client.get(f"/workflows/{key}/steps")).json()["items"]
    assert status["output"] == "all four turns done"
    assert status["attempts"] == 2
    # Turns 1 and 2 reached the model once; turn 3 twice (in flight at the kill); turn 4 once.
    assert fake_llm.turn_calls(QUERY) == [1, 1, 2, 1]
    calls = recorded(log)
    assert Counter(label for label, _ in calls) == {"a": 1, "b": 1, "c": 1, "d": 1}
    # The first turn's attempts are the run's when it finished (the first): no statement began
    # it, the run's claim did.
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


async def test_kill_during_the_third_turn_of_a_four_turn_run(
    start_service: StartService, fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "tool-calls.log"
    monkeypatch.setenv(LOG_VARIABLE, str(log))
    release = script_four_turns(fake_llm)
    first = await start_service(**FAST)
    async with first.client() as client:
        assert (await client.post("/workflows/crash/run/send", json=QUERY)).status_code == 202
    await fake_llm.wait_for_turn(QUERY, 2, timeout=30)
    await first.kill()
    release.set()  # its answer goes to a process that no longer exists

    second = await start_service(**FAST)
    async with second.client() as client:
        await check_resumed_from_the_journal(client, "crash", fake_llm, log)


async def test_another_replica_takes_the_run_over_once_the_lease_expires(
    start_service: StartService, fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "tool-calls.log"
    monkeypatch.setenv(LOG_VARIABLE, str(log))
    release = script_four_turns(fake_llm)
    running, standby = await asyncio.gather(start_service(**FAST), start_service(**FAST))
    async with running.client() as client:
        # Accepted here, so leased to this replica: the other one claims only a lapsed lease.
        assert (await client.post("/workflows/moved/run/send", json=QUERY)).status_code == 202
    await fake_llm.wait_for_turn(QUERY, 2, timeout=30)
    await running.kill()
    release.set()
    # Nobody restarts the killed replica: the standby claims the run once its lease expires.
    async with standby.client() as client:
        await check_resumed_from_the_journal(client, "moved", fake_llm, log)
