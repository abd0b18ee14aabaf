"""The workflow list shows each run's usage, summed over its steps."""

from __future__ import annotations

import httpx

from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls, Usage


async def test_the_list_shows_each_runs_usage(client: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    fake_llm.script_turns(
        "counted",
        ToolCalls(Call("nope", {}), usage=Usage(10, 4)),
        Text("done", usage=Usage(20, 6)),
    )
    assert (await client.post("/workflows/counted/run", json="counted")).status_code == 200
    assert (await client.post("/workflows/plain/run", json="plain")).status_code == 200

    listed = (await client.get("/workflows")).json()["items"]
    usage = {item["key"]: item["usage"] for item in listed}
    assert usage == {
        "counted": {"input_tokens": 30, "output_tokens": 10, "cost_usd": None},
        "plain": {"input_tokens": 1, "output_tokens": 1, "cost_usd": None},
    }
    status = (await client.get("/workflows/counted")).json()
    assert status["usage"] == usage["counted"]
