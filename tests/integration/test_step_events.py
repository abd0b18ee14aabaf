"""`step` events on a workflow's event stream: each step of a multi-step run as it begins and
as it finishes, before the final state — from another replica than the one running it, so
through the step statements' notifications and rows, not this process's memory."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningApp
from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls, Usage
from tests.fakes.tools import LOG_VARIABLE
from tests.helpers import eventually
from tests.integration.test_api import read_events

StartApp = Callable[..., Awaitable[RunningApp]]
Events = list[tuple[str, dict[str, Any]]]


def steps_seen(events: Events) -> list[tuple[int, str]]:
    return [(data["seq"], data["status"]) for name, data in events if name == "step"]


async def test_steps_stream_live_from_the_replica_running_them(
    start_app: StartApp, fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOG_VARIABLE, str(tmp_path / "tool-calls.log"))
    running = await start_app(agent_tools="tests.fakes.tools")
    watching = await start_app(agent_tools="tests.fakes.tools")
    query = "three turns, watched"
    fake_llm.script_turns(
        query,
        ToolCalls(Call("record", {"label": "a"}), usage=Usage(5, 2)),
        ToolCalls(Call("record", {"label": "b"}), Call("record", {"label": "c"})),
        Text("watched to the end", usage=Usage(9, 4)),
    )
    release = fake_llm.hold_turn(query, 1)
    response = await running.client.post("/workflows/watched/run/send", json=query)
    assert response.status_code == 202
    events: Events = []
    reader = asyncio.create_task(read_events(watching.client, "watched", events))
    # Live: while the second turn is held, the watcher has seen the first turn and the tool
    # call finish and the second turn begin.
    await eventually(
        lambda: asyncio.sleep(0, steps_seen(events)),
        lambda seen: (2, "running") in seen,
        timeout=30,
    )
    assert {(0, "succeeded"), (1, "succeeded")} <= set(steps_seen(events))
    assert "succeeded" not in [name for name, _ in events]
    release.set()
    async with asyncio.timeout(30):
        await reader  # the stream ends with the run
    names = [name for name, _ in events]
    assert names[0] == "running"
    assert names[-1] == "succeeded"
    assert events[-1][1]["usage"]["input_tokens"] >= 14
    # Every step began, then finished, and all of that came before the final state.
    seen = steps_seen(events)
    for seq, kind in enumerate(["llm", "tool", "llm", "tool", "tool", "llm"]):
        began = seen.index((seq, "running"))
        assert seen.index((seq, "succeeded")) > began
        step = next(d for n, d in events if n == "step" and d["seq"] == seq and d["finished_at"])
        assert step["kind"] == kind
        assert step["attempts"] == 1
    assert len(seen) == 12
    first = next(d for n, d in events if n == "step" and d["seq"] == 0 and d["finished_at"])
    last = next(d for n, d in events if n == "step" and d["seq"] == 5 and d["finished_at"])
    assert (first["input_tokens"], first["output_tokens"]) == (5, 2)
    assert (last["input_tokens"], last["output_tokens"]) == (9, 4)
    assert last["output"] == {"role": "assistant", "content": "watched to the end"}
    # The first turn's id is the one its row got.
    ids = {d["id"] for n, d in events if n == "step" and d["seq"] == 0}
    assert len(ids) == 1
