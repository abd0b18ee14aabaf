"""What the journal costs a run, counted in the statements the service sends: a one-turn run
commits what it did before the journal (accept, complete), a step of a longer run one statement
(two for a call finishing beside another); and the first model turn, begun by no statement, is
still journaled like any other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.db import gateway
from tests.conftest import RunningApp
from tests.fakes.llm import Call, FakeLLM, Status, Text, ToolCalls, Usage
from tests.helpers import samples

StartApp = Callable[..., Awaitable[RunningApp]]
# The statements a run's path sends (the rest are the workers' polls, renewals and reads).
RUN_PATH = {
    "accept_run_leased",
    "confirm_run_lease",
    "begin_step",
    "finish_step",
    "record_step",
    "run_steps",
    "complete_run",
}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the run-path statements the gateway runs, in order."""
    names: list[str] = []
    named = gateway.statement

    def counting(name: str) -> gateway.Statement:
        if name in RUN_PATH:
            names.append(name)
        return named(name)

    monkeypatch.setattr(gateway, "statement", counting)
    return names


async def steps_of(app: RunningApp, key: str) -> list[dict[str, Any]]:
    response = await app.client.get(f"/workflows/{key}/steps")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_one_turn_run_commits_as_before_the_journal(
    start_app: StartApp, fake_llm: FakeLLM, sent: list[str]
) -> None:
    app = await start_app()
    fake_llm.script_turns("one turn", Text("the answer", usage=Usage(7, 3)))
    response = await app.client.post("/workflows/one/run", json="one turn")
    assert response.status_code == 200, response.text
    assert sent == ["accept_run_leased", "complete_run"]
    [step] = await steps_of(app, "one")
    assert step["seq"] == 0
    assert step["kind"] == "llm"
    assert step["status"] == "succeeded"
    assert step["attempts"] == 1
    assert (step["input_tokens"], step["output_tokens"]) == (7, 3)
    assert step["started_at"] <= step["finished_at"]
    assert step["output"] == {"role": "assistant", "content": "the answer"}
    usage = (await app.client.get("/workflows/one")).json()["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (7, 3)


async def test_each_step_of_a_longer_run_costs_one_statement(
    start_app: StartApp, fake_llm: FakeLLM, sent: list[str]
) -> None:
    app = await start_app(agent_tools="app.agent.examples")
    fake_llm.script_turns(
        "three turns",
        ToolCalls(Call("add", {"a": 1, "b": 2})),
        ToolCalls(Call("add", {"a": 3, "b": 4}), Call("multiply", {"a": 2, "b": 5})),
        Text("done"),
    )
    response = await app.client.post("/workflows/three/run", json="three turns")
    assert response.status_code == 200, response.text
    steps = await steps_of(app, "three")
    assert [(s["seq"], s["kind"], s["status"]) for s in steps] == [
        (0, "llm", "succeeded"),
        (1, "tool", "succeeded"),
        (2, "llm", "succeeded"),
        (3, "tool", "succeeded"),
        (4, "tool", "succeeded"),
        (5, "llm", "succeeded"),
    ]
    # A step finished while no other is in flight is recorded by the statement that begins the
    # next: one statement a step. The first of two parallel calls to finish is written on its
    # own (the other is still in flight); the answer is finished by the completion.
    assert sent == [
        "accept_run_leased",
        "begin_step",  # the call at 1, the first turn (0) with its result
        "begin_step",  # the turn at 2, the call at 1 with its result
        "begin_step",  # the call at 3, the turn at 2 with its result
        "begin_step",  # the call at 4 (after the one before it: no effect before 2 is written)
        "finish_step",  # the first of 3 and 4 to finish
        "begin_step",  # the answer at 5, the other of 3 and 4 with its result
        "complete_run",
    ]
    step_statements = [name for name in sent if name.endswith("_step")]
    assert len(step_statements) == len(steps)


async def test_a_held_result_is_written_before_a_run_that_ends_otherwise(
    start_app: StartApp, fake_llm: FakeLLM, sent: list[str]
) -> None:
    """The loop stops at max_steps with its last turn's result held: it is journaled before
    the failure is (a resume replays it rather than asking the model again)."""
    app = await start_app(agent_tools="app.agent.examples")
    fake_llm.script_turns(
        "too long", ToolCalls(Call("add", {"a": 1, "b": 2})), ToolCalls(Call("add", {"a": 3}))
    )
    response = await app.client.post(
        "/workflows/long/run", json={"query": "too long", "max_steps": 2}
    )
    assert response.status_code == 424, response.text
    assert "max_steps_exceeded" in response.json()["error"]["message"]
    steps = await steps_of(app, "long")
    assert [(s["seq"], s["kind"], s["status"]) for s in steps] == [
        (0, "llm", "succeeded"),
        (1, "tool", "succeeded"),
        (2, "llm", "succeeded"),
    ]
    assert steps[2]["output"]["tool_calls"][0]["function"]["name"] == "add"
    assert sent == ["accept_run_leased", "begin_step", "begin_step", "record_step", "complete_run"]


async def test_a_failed_first_turn_is_journaled_and_runs_again_under_its_id(
    start_app: StartApp, fake_llm: FakeLLM
) -> None:
    app = await start_app()
    fake_llm.script_turns("flaky first turn", (Status(503), Text("done after a retry")))
    response = await app.client.post("/workflows/flaky0/run", json="flaky first turn")
    assert response.status_code == 200, response.text
    assert fake_llm.turn_calls("flaky first turn") == [2]
    [step] = await steps_of(app, "flaky0")
    # Its attempts are the run's: the first journaled the failure, the second the answer.
    assert (step["seq"], step["status"], step["attempts"], step["error"]) == (
        0,
        "succeeded",
        2,
        None,
    )
    assert step["output"] is not None
    assert (await app.client.get("/workflows/flaky0")).json()["attempts"] == 2


async def test_metrics_count_tokens_steps_and_tool_latency(
    start_app: StartApp, fake_llm: FakeLLM
) -> None:
    app = await start_app(agent_tools="tests.fakes.tools,app.agent.examples")
    fake_llm.script_turns(
        "measured",
        ToolCalls(
            Call("add", {"a": 1, "b": 2}), Call("fail", {"reason": "no"}), usage=Usage(10, 4)
        ),
        Text("done", usage=Usage(20, 6)),
    )
    response = await app.client.post("/workflows/measured/run", json="measured")
    assert response.status_code == 200, response.text
    figures = samples((await app.client.get("/metrics")).text)
    model = app.settings.model

    def figure(name: str, **labels: str) -> float:
        return figures.get((name, tuple(sorted(labels.items()))), 0)

    assert figure("agent_notify_tokens_total", model=model, direction="input") == 30
    assert figure("agent_notify_tokens_total", model=model, direction="output") == 10
    assert figure("agent_notify_steps_total", kind="llm", outcome="succeeded") == 2
    assert figure("agent_notify_steps_total", kind="tool", outcome="succeeded") == 1
    assert figure("agent_notify_steps_total", kind="tool", outcome="failed") == 1
    assert figure("agent_notify_tool_call_seconds_count", tool="add", outcome="ok") == 1
    assert figure("agent_notify_tool_call_seconds_count", tool="fail", outcome="error") == 1
    # Every statement the process sent is counted (the agent benchmark divides them by steps).
    assert figure("agent_notify_db_statements_total") >= 5
