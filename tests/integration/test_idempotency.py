"""At most once per key: a second run attaches, other input conflicts, re-subscribing is a no-op."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.conftest import RunningApp
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
    for body in ("second", {"query": "first", "instructions": "Answer in French."}):
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


async def test_runs_may_only_choose_models_the_operator_allows(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM
) -> None:
    app = await start_app(agent_allowed_models="openai/gpt-*, openai/fake-*")
    refused = await app.client.post(
        "/workflows/m1/run/send", json={"query": "q", "model": "anthropic/claude-x"}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "model_not_allowed"
    allowed = await app.client.post(
        "/workflows/m2/run", json={"query": "q", "model": "openai/fake-other"}
    )
    assert allowed.status_code == 200
    assert fake_llm.calls[-1]["model"] == "fake-other"


async def test_a_model_without_its_key_fails_at_once(
    start_app: Callable[..., Awaitable[RunningApp]],
    fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    app = await start_app(agent_api_key=None, agent_allowed_models="anthropic/*")
    response = await app.client.post(
        "/workflows/nokey/run", json={"query": "q", "model": "anthropic/claude-x"}
    )
    assert response.status_code == 424
    assert "ANTHROPIC_API_KEY" in response.json()["error"]["message"]
    status = (await app.client.get("/workflows/nokey")).json()
    assert status["attempts"] == 1
    assert fake_llm.calls == []


async def test_one_person_is_one_subscriber_whatever_the_spelling(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/workflows/case/on_notify/send", json="Ann.Lee@Example.COM")
    second = await client.post("/workflows/case/on_notify/send", json="ann.lee@example.com")
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["email"] == "ann.lee@example.com"
    idn = await client.post("/workflows/case/on_notify/send", json="me@Bücher.example")
    assert idn.status_code == 202
    assert idn.json()["email"] == "me@xn--bcher-kva.example"
