"""At most once per key: a second run attaches, other input conflicts, re-subscribing is a no-op."""

from __future__ import annotations

import asyncio

import httpx

from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, until_workflow


async def test_second_run_attaches_and_never_calls_the_llm_again(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    first = await client.post("/workflows/once/run/send", json="q")
    assert first.json()["status"] == "accepted"
    again = await client.post("/workflows/once/run/send", json={"query": "q"})
    assert again.status_code == 202
    assert again.json() == {"key": "once", "status": "previously_accepted"}
    sync = await client.post("/workflows/once/run", json="q")
    assert sync.status_code == 200
    assert sync.json()["output"] == answer_for("q")
    assert (await client.post("/workflows/once/run", json="q")).json()["output"] == answer_for("q")
    assert fake_llm.calls_for("q") == 1


async def test_concurrent_runs_of_one_key_call_the_llm_once(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    responses = await asyncio.gather(
        *(client.post("/workflows/herd/run", json="together") for _ in range(20))
    )
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["output"] for r in responses} == {answer_for("together")}
    assert fake_llm.calls_for("together") == 1


async def test_same_key_with_a_different_input_is_a_conflict(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    await client.post("/workflows/taken/run", json="first")
    for body in ("second", {"query": "first", "model": "openai/other"}):
        response = await client.post("/workflows/taken/run/send", json=body)
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "key_conflict"
        assert "different input" in error["message"]
    assert fake_llm.queries() == ["first"]


async def test_subscribing_twice_sends_one_email(client: httpx.AsyncClient, inbox: Inbox) -> None:
    first = await client.post("/workflows/twice/on_notify/send", json="me@example.com")
    second = await client.post("/workflows/twice/on_notify/send", json={"email": "me@example.com"})
    assert first.json()["id"] == second.json()["id"]
    await client.post("/workflows/twice/run", json="q")
    await until_workflow(client, "twice", all_sent)
    third = await client.post("/workflows/twice/on_notify", json="me@example.com")
    assert third.status_code == 200
    assert third.json()["id"] == first.json()["id"]
    status = await until_workflow(client, "twice", all_sent)
    assert len(status["subscriptions"]) == 1
    assert len(inbox.messages) == 1
