"""The agent loop end to end: the app in this event loop, the fake LLM over HTTP (litellm's own
client runs), Python tools, a real Postgres. Every model turn and tool call is a journaled step;
a finished one is never made again."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RunningApp
from tests.fakes.llm import Call, FakeLLM, Status, Text, ToolCalls, Usage
from tests.fakes.tools import LOG_VARIABLE, recorded
from tests.helpers import eventually, samples

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


def tool_messages(call: dict[str, Any]) -> list[str]:
    return [m["content"] for m in call["messages"] if m["role"] == "tool"]


def offered(call: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in call.get("tools", [])}


async def steps_of(client: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/workflows/{key}/steps", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_several_turns_with_parallel_tool_calls_each_a_step(
    agent: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    query = "compute for me"
    fake_llm.script_turns(
        query,
        ToolCalls(Call("add", {"a": 2, "b": 3}), usage=Usage(10, 4)),
        # Both rendezvous calls return only when both have arrived: they run at once.
        ToolCalls(
            Call("rendezvous", {"name": "turn-2", "parties": 2}),
            Call("rendezvous", {"name": "turn-2", "parties": 2}),
            Call("multiply", {"a": 5, "b": 4}),
            usage=Usage(20, 6),
        ),
        Text("the answer is 20", usage=Usage(30, 5)),
    )
    response = await agent.post("/workflows/multi/run", json=query)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "the answer is 20"

    assert fake_llm.turn_calls(query) == [1, 1, 1]
    first, second, third = fake_llm.calls
    assert {"add", "multiply", "current_time", "record", "fail", "rendezvous"} <= offered(first)
    assert tool_messages(second) == ["5"]
    assert tool_messages(third) == ["5", "met 2", "met 2", "20"]

    steps = (await steps_of(agent, "multi"))["items"]
    assert [(s["seq"], s["kind"], s["name"]) for s in steps] == [
        (0, "llm", "openai/fake-model"),
        (1, "tool", "add"),
        (2, "llm", "openai/fake-model"),
        (3, "tool", "rendezvous"),
        (4, "tool", "rendezvous"),
        (5, "tool", "multiply"),
        (6, "llm", "openai/fake-model"),
    ]
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in steps)
    assert steps[1]["input"] == {"a": 2, "b": 3}
    assert steps[1]["output"] == {"content": "5", "is_error": False}
    assert steps[0]["output"]["tool_calls"][0]["function"]["name"] == "add"
    assert [s["role"] for s in steps[0]["input"]] == ["system", "user"]
    assert [s["role"] for s in steps[6]["input"]] == ["tool", "tool", "tool"]
    assert (steps[0]["input_tokens"], steps[0]["output_tokens"]) == (10, 4)

    status = (await agent.get("/workflows/multi")).json()
    assert status["usage"] == {"input_tokens": 60, "output_tokens": 15, "cost_usd": None}

    page = await steps_of(agent, "multi", limit=3)
    assert [s["seq"] for s in page["items"]] == [0, 1, 2]
    rest = await steps_of(agent, "multi", limit=10, cursor=page["next_cursor"])
    assert [s["seq"] for s in rest["items"]] == [3, 4, 5, 6]
    assert rest["next_cursor"] is None


async def test_tool_failures_are_handed_to_the_model(
    agent: httpx.AsyncClient, fake_llm: FakeLLM, tool_log: Path
) -> None:
    query = "try things"
    fake_llm.script_turns(
        query,
        ToolCalls(
            Call("fail", {"reason": "the disk is full"}),
            Call("add", '{"a": 2, "b":'),  # not JSON
            Call("add", {"a": "two", "b": 1}),  # not a number
            Call("record", {"label": "x"}),  # not one this run may use
            Call("nope", {}),
        ),
        Text("coped"),
    )
    body = {"query": query, "tools": ["fail", "add", "add"]}
    response = await agent.post("/workflows/failing/run", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "coped"

    first, second = fake_llm.calls
    assert offered(first) == {"add", "fail"}
    results = tool_messages(second)
    assert results[0] == "error: RuntimeError: the disk is full"
    assert "not valid JSON" in results[1]
    assert results[2].startswith("error: invalid arguments for add: a:")
    assert results[3] == "error: the tool 'record' is not one this run may use"
    assert results[4] == "error: the tool 'nope' is not one this run may use"
    assert recorded(tool_log) == []

    steps = (await steps_of(agent, "failing"))["items"]
    assert [s["status"] for s in steps] == ["succeeded", *["failed"] * 5, "succeeded"]
    assert steps[2]["input"] == '{"a": 2, "b":'
    assert steps[1]["error"] == "error: RuntimeError: the disk is full"
    status = (await agent.get("/workflows/failing")).json()
    assert status["tools"] == ["add", "fail"]


async def test_a_run_past_max_steps_fails(agent: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    query = "loop forever"
    calls = ToolCalls(Call("add", {"a": 1, "b": 1}))
    fake_llm.script_turns(query, calls, calls, calls, calls)
    body = {"query": query, "max_steps": 2}
    response = await agent.post("/workflows/looping/run", json=body)
    assert response.status_code == 424
    assert "max_steps_exceeded" in response.json()["error"]["message"]
    assert fake_llm.turn_calls(query) == [1, 1]
    steps = (await steps_of(agent, "looping"))["items"]
    # The second turn's tool calls are not made: no model could read their results.
    assert [s["kind"] for s in steps] == ["llm", "tool", "llm"]


async def test_a_run_over_the_token_budget_gets_no_further_turn(
    start_app: StartApp, fake_llm: FakeLLM, tool_log: Path
) -> None:
    client = (await start_app(agent_tools=TOOLS, agent_max_tokens_per_run=15)).client
    query = "expensive"
    fake_llm.script_turns(
        query, ToolCalls(Call("add", {"a": 1, "b": 1}), usage=Usage(10, 5)), Text("never")
    )
    response = await client.post("/workflows/costly/run", json=query)
    assert response.status_code == 424
    assert "budget_exceeded" in response.json()["error"]["message"]
    assert fake_llm.turn_calls(query) == [1]


async def test_a_failed_model_turn_is_retried_from_the_journal(
    agent: httpx.AsyncClient, fake_llm: FakeLLM, tool_log: Path
) -> None:
    query = "flaky second turn"
    fake_llm.script_turns(
        query,
        ToolCalls(Call("record", {"label": "once"})),
        (Status(503), Text("done after a retry")),
    )
    response = await agent.post("/workflows/flaky/run", json=query)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "done after a retry"
    # The first turn and the tool call are not made again; the failed turn is, under its id.
    assert fake_llm.turn_calls(query) == [1, 2]
    assert [label for label, _ in recorded(tool_log)] == ["once"]
    steps = (await steps_of(agent, "flaky"))["items"]
    assert [s["attempts"] for s in steps] == [1, 1, 2]
    assert steps[2]["status"] == "succeeded"
    assert steps[2]["error"] is None
    status = (await agent.get("/workflows/flaky")).json()
    assert status["attempts"] == 2


async def test_the_offline_model_calls_the_example_tools(start_app: StartApp) -> None:
    client = (await start_app(agent_model=None, agent_api_base=None, agent_api_key=None)).client
    query = "Add 2 and 3, then multiply the result by 4"
    response = await client.post("/workflows/offline/run", json=query)
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert "add(a=2, b=3) → 5" in output
    assert "multiply(a=5, b=4) → 20" in output
    steps = (await steps_of(client, "offline"))["items"]
    assert [(s["kind"], s["name"]) for s in steps] == [
        ("llm", "agent-notify-offline/echo"),
        ("tool", "add"),
        ("llm", "agent-notify-offline/echo"),
        ("tool", "multiply"),
        ("llm", "agent-notify-offline/echo"),
    ]
    usage = (await client.get("/workflows/offline")).json()["usage"]
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0
    assert usage["cost_usd"] is None
    # A query that asks for no tool gets the plain offline answer in one turn.
    plain = await client.post("/workflows/plain/run", json="Tell me about durable execution")
    assert plain.json()["output"].startswith("[offline model] You asked:")


async def test_the_runs_options_are_part_of_its_input(
    agent: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    body = {"query": "q", "tools": ["add", "multiply"], "max_steps": 3}
    first = await agent.post("/workflows/opts/run/send", json=body)
    assert first.json()["status"] == "accepted"
    same = {**body, "tools": ["multiply", "add", "add"]}
    assert (await agent.post("/workflows/opts/run/send", json=same)).json()["status"] == (
        "previously_accepted"
    )
    other = await agent.post("/workflows/opts/run/send", json={**body, "max_steps": 4})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "key_conflict"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "q", "max_steps": 21}, "max_steps_too_large"),
        ({"query": "q", "max_steps": 0}, "invalid_request"),
        ({"query": "q", "tools": ["bad name"]}, "invalid_request"),
        ({"query": "q", "tools": "add"}, "invalid_request"),
    ],
)
async def test_bad_options_are_refused(
    agent: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    response = await agent.post("/workflows/bad/run/send", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


async def test_the_steps_of_an_unknown_workflow_and_a_bad_cursor(
    agent: httpx.AsyncClient,
) -> None:
    missing = await agent.get("/workflows/nobody/steps")
    assert missing.status_code == 404
    assert (await agent.post("/workflows/k/run", json="q")).status_code == 200
    for cursor in ("x1", "²", "9" * 20):
        bad = await agent.get("/workflows/k/steps", params={"cursor": cursor})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_cursor"


async def test_long_step_values_are_cut_with_their_length(
    agent: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    long_text = "word " * 2000
    fake_llm.script_turns("long", Text(long_text))
    assert (await agent.post("/workflows/long/run", json="long")).status_code == 200
    [step] = (await steps_of(agent, "long"))["items"]
    assert step["output_truncated"] is True
    assert step["output_length"] == len(json.dumps({"role": "assistant", "content": long_text}))
    assert len(step["output"]) == 4096


async def test_a_run_whose_lease_passed_on_makes_no_further_step(
    agent: httpx.AsyncClient, fake_llm: FakeLLM, db: asyncpg.Connection, tool_log: Path
) -> None:
    query = "taken over"
    fake_llm.script_turns(
        query,
        ToolCalls(Call("record", {"label": "first"})),
        ToolCalls(Call("record", {"label": "second"})),
        Text("never"),
    )
    release = fake_llm.hold_turn(query, 1)
    assert (await agent.post("/workflows/taken/run/send", json=query)).status_code == 202
    await fake_llm.wait_for_turn(query, 1)
    # Another process took the run over (its lease lapsed meanwhile, say): no NOTIFY.
    await db.execute("UPDATE workflow SET lease_owner = 'another-process' WHERE key = 'taken'")
    release.set()

    async def abandoned() -> float:
        figures = samples((await agent.get("/metrics")).text)
        return figures.get(("agent_notify_runs_finished_total", (("outcome", "abandoned"),)), 0)

    await eventually(abandoned, lambda n: n == 1)
    # The answer of the turn in flight was not recorded, and its tool call never made.
    steps = (await steps_of(agent, "taken"))["items"]
    assert [(s["kind"], s["status"]) for s in steps] == [
        ("llm", "succeeded"),
        ("tool", "succeeded"),
        ("llm", "running"),
    ]
    assert [label for label, _ in recorded(tool_log)] == ["first"]
