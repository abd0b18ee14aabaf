"""The agent step on the model interface: answers, failures sorted into transient and
permanent, bugs let through, the offline model; on both transports where they differ in how
they send (the lean one on the client's aiohttp session, acompletion through the openai SDK)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from app.config import OFFLINE_MODEL, Settings
from app.errors import PermanentError, TransientError
from app.llm import Agent, ModelClient, offline_answer
from tests.fakes.llm import FakeLLM, Status, answer_for

Handler = Callable[[web.Request], Awaitable[web.Response]]
MakeAgent = Callable[[Settings], Agent]

# Status → (the litellm exception either transport reports, how the service treats it).
STATUSES = {
    400: ("BadRequestError", PermanentError),
    401: ("AuthenticationError", PermanentError),
    404: ("NotFoundError", PermanentError),
    429: ("RateLimitError", TransientError),
    500: ("InternalServerError", TransientError),
    503: ("ServiceUnavailableError", TransientError),
}


@pytest.fixture
async def agent_for() -> AsyncIterator[MakeAgent]:
    """Makes agents, and closes their clients' HTTP sessions after the test."""
    made: list[ModelClient] = []

    def make(settings: Settings) -> Agent:
        made.append(ModelClient(settings))
        return Agent(made[-1])

    yield make
    for client in made:
        await client.aclose()


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(
        agent_model="openai/fake-model", agent_api_base=url, agent_api_key="k", **overrides
    )


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "acompletion"])
async def test_both_transports_answer_and_fail_alike(
    fake_llm: FakeLLM, agent_for: MakeAgent, lean: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORGANIZATION", "org-bench")
    agent = agent_for(settings_for(fake_llm.url, agent_lean_calls=lean))
    assert agent.client.transport() == ("lean" if lean else "acompletion")

    assert await agent.answer("fine", model=None, instructions="Be brief.") == answer_for("fine")
    [call], [headers] = fake_llm.calls, fake_llm.headers
    assert call["model"] == "fake-model"
    assert call["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "fine"},
    ]
    assert headers["authorization"] == "Bearer k"
    assert headers["openai-organization"] == "org-bench"
    # Which client sent it: aiohttp for the lean call, the openai SDK for acompletion.
    assert ("aiohttp" in headers["user-agent"]) is lean

    for status, (name, error) in STATUSES.items():
        fake_llm.fail(f"status {status}", status)
        with pytest.raises(error, match=rf"^{name}: fake failure {status}$"):
            await agent.answer(f"status {status}", model=None, instructions=None)
        assert fake_llm.calls_for(f"status {status}") == 1

    fake_llm.hold("slow")
    slow = agent_for(settings_for(fake_llm.url, agent_lean_calls=lean, agent_timeout_seconds=0.5))
    # The lean call's deadline is the client's own; acompletion's may be the SDK's timeout.
    with pytest.raises(TransientError, match=r"^Timeout: "):
        await slow.answer("slow", model=None, instructions=None)


async def test_a_bug_is_not_sorted_but_propagates(
    fake_llm: FakeLLM, agent_for: MakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TypeError is no model failure: retrying it 30 times would only hide it."""
    agent = agent_for(settings_for(fake_llm.url))

    async def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("complete() got an unexpected keyword argument 'x'")

    monkeypatch.setattr(agent.client, "complete", broken)
    with pytest.raises(TypeError, match="unexpected keyword"):
        await agent.answer("q", model=None, instructions=None)


async def test_missing_credentials_fail_at_once_with_the_variable_to_set(
    agent_for: MakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    agent = agent_for(Settings(agent_model="anthropic/claude-3-5-haiku-latest"))
    with pytest.raises(PermanentError, match=r"^AuthenticationError: .*ANTHROPIC_API_KEY"):
        await agent.answer("q", model=None, instructions=None)


async def test_the_offline_model_answers_deterministically_with_usage(
    agent_for: MakeAgent,
) -> None:
    agent = agent_for(Settings())
    assert agent.client.settings.model == OFFLINE_MODEL
    answer = await agent.answer("  Write a\npoem ", model=None, instructions="Be kind.")
    assert answer == offline_answer("Write a poem", "Be kind.")
    assert answer.startswith("[offline model] You asked: Write a poem\n\n")
    response = await agent.client.complete([{"role": "user", "content": "Write a poem"}])
    assert response.usage.prompt_tokens == 3
    assert response.usage.completion_tokens == len(answer.split())


async def test_answers_are_made_storable(fake_llm: FakeLLM, agent_for: MakeAgent) -> None:
    fake_llm.answers["odd"] = "half an emoji \ud83d and a NUL \x00 here"
    agent = agent_for(settings_for(fake_llm.url))
    assert await agent.answer("odd", model=None, instructions=None) == (
        "half an emoji ? and a NUL  here"
    )


@asynccontextmanager
async def llm_server(handler: Handler) -> AsyncIterator[str]:
    """An OpenAI-style server of one handler; yields its base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "acompletion"])
async def test_compressed_replies_are_read_on_both_transports(
    agent_for: MakeAgent, lean: bool
) -> None:
    """A server (or proxy) that gzips its JSON: aiohttp unzips it, and the lean call must not
    let litellm's httpx unzip it again."""

    async def gzipped(request: web.Request) -> web.Response:
        body = await request.json()
        query = body["messages"][-1]["content"]
        if query == "bad":
            reply = web.json_response({"error": {"message": "bad thing"}}, status=400)
        else:
            message = {"role": "assistant", "content": answer_for(query)}
            reply = web.json_response(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            )
        reply.enable_compression(web.ContentCoding.gzip)
        return reply

    async with llm_server(gzipped) as url:
        agent = agent_for(settings_for(url, agent_lean_calls=lean))
        assert await agent.answer("q", model=None, instructions=None) == answer_for("q")
        with pytest.raises(PermanentError, match=r"^BadRequestError: bad thing$"):
            await agent.answer("bad", model=None, instructions=None)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "acompletion"])
async def test_a_failure_records_the_providers_message_not_its_page(
    agent_for: MakeAgent, lean: bool
) -> None:
    async def gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>" + "x" * 5000, content_type="text/html")

    async with llm_server(gateway) as url:
        agent = agent_for(settings_for(url, agent_lean_calls=lean))
        with pytest.raises(TransientError) as failure:
            await agent.answer("q", model=None, instructions=None)
    assert len(str(failure.value)) < 600
    if lean:
        assert str(failure.value) == "BadGatewayError: Error code: 502"


async def test_the_lean_call_goes_through_the_proxy_the_environment_names(
    fake_llm: FakeLLM, agent_for: MakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake LLM plays the proxy: a name that resolves nowhere can only be reached through it.
    for name in ("http_proxy", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake_llm.url.removesuffix("/v1"))
    agent = agent_for(settings_for("http://llm.invalid/v1"))
    assert agent.client.transport() == "lean"
    assert await agent.answer("via proxy", model=None, instructions=None) == answer_for("via proxy")
    assert fake_llm.calls_for("via proxy") == 1


async def test_a_scripted_failure_is_retried_by_nobody_here(
    fake_llm: FakeLLM, agent_for: MakeAgent
) -> None:
    """Retries are the service's own (durable): one failing call is one request."""
    fake_llm.script("once", Status(503), Status(503))
    for lean in (True, False):
        agent = agent_for(settings_for(fake_llm.url, agent_lean_calls=lean))
        with pytest.raises(TransientError):
            await agent.answer("once", model=None, instructions=None)
    assert fake_llm.calls_for("once") == 2


def test_one_client_serves_more_than_one_event_loop(fake_llm_url: str) -> None:
    client = ModelClient(settings_for(fake_llm_url))
    agent = Agent(client)

    async def ask(*, close: bool) -> str:
        try:
            return await agent.answer("loop", model=None, instructions=None)
        finally:
            if close:
                await client.aclose()

    # The first loop ends with the client's session open (its loop closes under it).
    assert asyncio.run(ask(close=False)) == answer_for("loop")
    assert asyncio.run(ask(close=True)) == answer_for("loop")


@pytest.fixture
def fake_llm_url() -> Iterator[str]:
    """A fake LLM in a thread of its own, for tests that run their own event loops."""
    ready: queue.Queue[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = queue.Queue()

    async def serve() -> None:
        llm, stop = FakeLLM(), asyncio.Event()
        await llm.start()
        ready.put((llm.url, asyncio.get_running_loop(), stop))
        await stop.wait()
        await llm.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    url, loop, stop = ready.get(timeout=10)
    yield url
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=10)
