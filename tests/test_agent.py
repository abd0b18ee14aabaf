"""The agent's two ways to call a model: the lean call (litellm's OpenAI configuration on the
agent's own aiohttp session) and `litellm.acompletion` (here through the openai SDK). Both run
against the fake OpenAI-compatible server and must be indistinguishable to the service."""

from __future__ import annotations

import asyncio
import queue
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from app.agent import Agent, env_proxy, load_litellm, provider_error_text
from app.config import OFFLINE_MODEL, Settings
from app.errors import PermanentError, TransientError
from tests.fakes.llm import FakeLLM, answer_for

Handler = Callable[[web.Request], Awaitable[web.Response]]

# Status → (the litellm exception either path reports, how the service treats it).
STATUSES = {
    400: ("BadRequestError", PermanentError),
    401: ("AuthenticationError", PermanentError),
    404: ("NotFoundError", PermanentError),
    429: ("RateLimitError", TransientError),
    500: ("InternalServerError", TransientError),
    503: ("ServiceUnavailableError", TransientError),
}


MakeAgent = Callable[[Settings], Agent]


@pytest.fixture
async def agent_for() -> AsyncIterator[MakeAgent]:
    """Makes agents, and closes their HTTP sessions after the test."""
    made: list[Agent] = []

    def make(settings: Settings) -> Agent:
        made.append(Agent(settings))
        return made[-1]

    yield make
    for agent in made:
        await agent.aclose()


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "acompletion"])
async def test_both_call_paths_answer_and_fail_alike(
    fake_llm: FakeLLM,
    agent_for: MakeAgent,
    lean: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_ORGANIZATION", "org-bench")

    def agent_with(timeout: float) -> Agent:
        settings = Settings(
            agent_model="openai/fake-model",
            agent_api_base=fake_llm.url,
            agent_api_key="k",
            agent_timeout_seconds=timeout,
            agent_lean_calls=lean,
        )
        return agent_for(settings)

    # A first acompletion call in a process imports half of litellm on the way: the short
    # deadline is only for the held call, once that is done.
    agent = agent_with(60)
    assert (agent.lean_route("openai/fake-model") is not None) is lean

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
        with pytest.raises(error, match=rf"^{name}: .*fake failure {status}"):
            await agent.answer(f"status {status}", model=None, instructions=None)
        assert fake_llm.calls_for(f"status {status}") == 1

    fake_llm.hold("slow")
    # The lean call's deadline is the agent's own; acompletion's may be the SDK's timeout.
    deadline = r"no answer within 0\.5 s" if lean else r"no answer within 0\.5 s|Timeout"
    with pytest.raises(TransientError, match=deadline):
        await agent_with(0.5).answer("slow", model=None, instructions=None)


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


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(
        agent_model="openai/fake-model", agent_api_base=url, agent_api_key="k", **overrides
    )


async def test_a_reply_that_is_not_json_is_a_transient_error(agent_for: MakeAgent) -> None:
    async def garbage(_request: web.Request) -> web.Response:
        return web.Response(text="<html>bad gateway page</html>", content_type="text/html")

    async with llm_server(garbage) as url:
        with pytest.raises(TransientError, match="json"):
            await agent_for(settings_for(url)).answer("q", model=None, instructions=None)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "acompletion"])
async def test_compressed_replies_are_read_on_both_paths(agent_for: MakeAgent, lean: bool) -> None:
    """A server (or proxy) that gzips its JSON: aiohttp unzips it, and the lean call must not
    let litellm's httpx unzip it again."""

    async def gzipped(request: web.Request) -> web.Response:
        body = await request.json()
        query = body["messages"][-1]["content"]
        if query == "bad":
            reply = web.json_response({"error": {"message": "bad thing"}}, status=400)
        else:
            reply = web.json_response(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer_for(query)},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        reply.enable_compression(web.ContentCoding.gzip)
        return reply

    async with llm_server(gzipped) as url:
        agent = agent_for(settings_for(url, agent_lean_calls=lean))
        assert await agent.answer("q", model=None, instructions=None) == answer_for("q")
        with pytest.raises(PermanentError, match=r"^BadRequestError: .*bad thing"):
            await agent.answer("bad", model=None, instructions=None)


async def test_the_lean_call_records_the_providers_message_not_its_page(
    agent_for: MakeAgent,
) -> None:
    async def gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>" + "x" * 5000, content_type="text/html")

    async with llm_server(gateway) as url:
        with pytest.raises(TransientError) as failure:
            await agent_for(settings_for(url)).answer("q", model=None, instructions=None)
    assert "Error code: 502" in str(failure.value)
    assert "xxx" not in str(failure.value)
    assert provider_error_text(400, '{"error": {"message": "boom"}}') == "boom"
    assert provider_error_text(400, '{"error": "plain"}') == "plain"
    assert provider_error_text(500, '{"detail": "odd"}') == 'Error code: 500 - {"detail": "odd"}'
    assert len(provider_error_text(400, '{"error": "' + "y" * 9000 + '"}')) == 500


async def test_the_lean_call_goes_through_the_proxy_the_environment_names(
    fake_llm: FakeLLM, agent_for: MakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake LLM plays the proxy: a name that resolves nowhere can only be reached through it.
    for name in ("http_proxy", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake_llm.url.removesuffix("/v1"))
    agent = agent_for(settings_for("http://llm.invalid/v1"))
    assert await agent.answer("via proxy", model=None, instructions=None) == answer_for("via proxy")
    assert fake_llm.calls_for("via proxy") == 1


def test_one_agent_serves_more_than_one_event_loop(fake_llm_url: str) -> None:
    agent = Agent(settings_for(fake_llm_url))

    async def ask(*, close: bool) -> str:
        try:
            return await agent.answer("loop", model=None, instructions=None)
        finally:
            if close:
                await agent.aclose()

    # The first loop ends with the agent's session open (its loop closes under it).
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


@pytest.mark.parametrize(
    ("model", "url"),
    [
        ("openai/gpt-4o-mini", "https://api.openai.com/v1/chat/completions"),
        ("gpt-4o-mini", "https://api.openai.com/v1/chat/completions"),
        ("openai/any-name-the-server-knows", "https://api.openai.com/v1/chat/completions"),
        # litellm rewrites parameters for these, or calls another API: acompletion serves them.
        ("openai/o3-mini", None),
        ("gpt-5", None),
        ("openai/responses/gpt-4o", None),
        ("anthropic/claude-3-5-haiku-latest", None),
        ("groq/llama-3.1-8b-instant", None),
        (OFFLINE_MODEL, None),
        ("no-such-provider-model", None),
    ],
)
def test_which_models_take_the_lean_call(
    model: str, url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    agent = Agent(Settings(agent_model="openai/gpt-4o-mini", agent_api_key="k"))
    route = agent.lean_route(model)
    assert (route.url if route else None) == url
    if route is not None:
        assert route.api_key == "k"
        assert "/" not in route.model


def test_models_litellm_sends_to_the_responses_api_are_not_called_lean() -> None:
    from litellm.llms.openai.chat.gpt_transformation import (
        OpenAIGPTConfig,
        OpenAIUnknownModelConfig,
    )

    agent = Agent(Settings(agent_model="openai/gpt-4o-mini", agent_api_key="k"))
    litellm = load_litellm()
    names = [
        name
        for name, info in litellm.model_cost.items()
        if info.get("litellm_provider") == "openai" and info.get("mode") == "responses"
    ]
    plain = [
        name
        for name in names
        if type(
            litellm.ProviderConfigManager.get_provider_chat_config(
                model=name, provider=litellm.LlmProviders.OPENAI
            )
        )
        in (OpenAIGPTConfig, OpenAIUnknownModelConfig)
    ]
    assert plain, "no model of this litellm tells the Responses API check from the config's"
    assert [name for name in names if agent.lean_route(f"openai/{name}")] == []


def test_lean_routes_take_litellms_tls_and_openai_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")  # litellm falls back to certifi
    monkeypatch.setenv("OPENAI_ORG_ID", "org-sdk")
    monkeypatch.delenv("OPENAI_ORGANIZATION", raising=False)
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-1")
    route = Agent(Settings(agent_model="openai/gpt-4o-mini")).lean_route("openai/gpt-4o-mini")
    assert route is not None
    assert isinstance(route.ssl, ssl.SSLContext)
    assert route.headers == {"OpenAI-Organization": "org-sdk", "OpenAI-Project": "proj-1"}
    monkeypatch.setenv("SSL_VERIFY", "False")
    unverified = Agent(Settings(agent_model="openai/gpt-4o-mini")).lean_route("gpt-4o-mini")
    assert unverified is not None
    assert unverified.ssl is False


def test_the_lean_call_goes_where_agent_api_base_says_and_can_be_turned_off() -> None:
    base = "http://llm.internal:8000/v1/"
    agent = Agent(Settings(agent_model="openai/local", agent_api_base=base))
    route = agent.lean_route("openai/local")
    assert route is not None
    assert route.url == "http://llm.internal:8000/v1/chat/completions"
    off = Agent(Settings(agent_model="openai/local", agent_api_base=base, agent_lean_calls=False))
    assert off.lean_route("openai/local") is None


def test_lean_calls_take_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,llm.internal")
    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.internal:1080")
    assert env_proxy("https://api.openai.com/v1/chat/completions") == (
        "http://user:pw@proxy.internal:3128"
    )
    assert env_proxy("https://llm.internal/v1/chat/completions") is None
    # No HTTP_PROXY: ALL_PROXY's.
    assert env_proxy("http://gpu-box:8000/v1/chat/completions") == "socks5://proxy.internal:1080"
    route = Agent(Settings(agent_model="openai/gpt-4o-mini", agent_api_key="k")).lean_route(
        "openai/gpt-4o-mini"
    )
    assert route is not None
    assert route.proxy == "http://user:pw@proxy.internal:3128"
