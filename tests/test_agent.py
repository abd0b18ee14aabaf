"""The agent's two ways to call a model: the lean call (litellm's OpenAI configuration on the
agent's own aiohttp session) and `litellm.acompletion` (here through the openai SDK). Both run
against the fake OpenAI-compatible server and must be indistinguishable to the service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.agent import Agent, env_proxy
from app.config import OFFLINE_MODEL, Settings
from app.errors import PermanentError, TransientError
from tests.fakes.llm import FakeLLM, answer_for

# Status → (the litellm exception either path reports, how the service treats it).
STATUSES = {
    400: ("BadRequestError", PermanentError),
    401: ("AuthenticationError", PermanentError),
    404: ("NotFoundError", PermanentError),
    429: ("RateLimitError", TransientError),
    500: ("InternalServerError", TransientError),
    503: ("ServiceUnavailableError", TransientError),
}


@pytest.fixture
async def agent_for(fake_llm: FakeLLM) -> AsyncIterator[type[Agent]]:
    made: list[Agent] = []

    class Made(Agent):
        def __init__(self, settings: Settings) -> None:
            super().__init__(settings)
            made.append(self)

    yield Made
    for agent in made:
        await agent.aclose()


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "acompletion"])
async def test_both_call_paths_answer_and_fail_alike(
    fake_llm: FakeLLM,
    agent_for: type[Agent],
    lean: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_ORGANIZATION", "org-bench")
    agent = agent_for(
        Settings(
            agent_model="openai/fake-model",
            agent_api_base=fake_llm.url,
            agent_api_key="k",
            agent_timeout_seconds=0.5,
            agent_lean_calls=lean,
        )
    )
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
    with pytest.raises(TransientError, match=r"no answer within 0\.5 s|Timeout"):
        await agent.answer("slow", model=None, instructions=None)


async def test_a_reply_that_is_not_json_is_a_transient_error(
    agent_for: type[Agent],
) -> None:
    from aiohttp import web

    async def garbage(_request: web.Request) -> web.Response:
        return web.Response(text="<html>bad gateway page</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", garbage)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        agent = agent_for(
            Settings(
                agent_model="openai/fake-model",
                agent_api_base=f"http://127.0.0.1:{port}/v1",
                agent_api_key="k",
            )
        )
        with pytest.raises(TransientError, match="json"):
            await agent.answer("q", model=None, instructions=None)
    finally:
        await runner.cleanup()


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
    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy("https://api.openai.com/v1/chat/completions") == (
        "http://user:pw@proxy.internal:3128"
    )
    assert env_proxy("https://llm.internal/v1/chat/completions") is None
    assert env_proxy("http://gpu-box:8000/v1/chat/completions") is None  # no HTTP_PROXY
    route = Agent(Settings(agent_model="openai/gpt-4o-mini", agent_api_key="k")).lean_route(
        "openai/gpt-4o-mini"
    )
    assert route is not None
    assert route.proxy == "http://user:pw@proxy.internal:3128"
