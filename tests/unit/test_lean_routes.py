"""Which models' calls take the lean transport, where they go, and the start-up self-check that
turns it off (with a WARNING) when litellm's internals no longer do what it needs."""

from __future__ import annotations

import importlib
import logging
import ssl
from collections.abc import Iterator

import litellm
import pytest
from litellm.llms.openai.chat.gpt_transformation import OpenAIGPTConfig, OpenAIUnknownModelConfig

from app.config import OFFLINE_MODEL, Settings
from app.llm import ModelClient
from app.llm.lean import LeanRoute, env_proxy, lean_route
from app.llm.selfcheck import checked_lean_route, self_check
from tests.fakes.llm import FakeLLM, answer_for


@pytest.fixture(autouse=True)
def no_openai_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def route_for(model: str, **settings: object) -> LeanRoute | None:
    return checked_lean_route(model, Settings(agent_model=model, **settings))  # type: ignore[arg-type]


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
    model: str, url: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    route = route_for(model, agent_api_key="k")
    assert (route.url if route else None) == url
    if route is not None:
        assert route.api_key == "k"
        assert "/" not in route.model
    # Not being a lean model is no mismatch: nothing to warn about.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_models_litellm_sends_to_the_responses_api_are_not_called_lean() -> None:
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
    assert [name for name in names if route_for(f"openai/{name}", agent_api_key="k")] == []


def test_lean_routes_take_litellms_tls_and_openai_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")  # litellm falls back to certifi
    monkeypatch.setenv("OPENAI_ORG_ID", "org-sdk")
    monkeypatch.delenv("OPENAI_ORGANIZATION", raising=False)
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-1")
    route = route_for("openai/gpt-4o-mini")
    assert route is not None
    assert isinstance(route.ssl, ssl.SSLContext)
    assert route.headers == {"OpenAI-Organization": "org-sdk", "OpenAI-Project": "proj-1"}
    monkeypatch.setenv("SSL_VERIFY", "False")
    unverified = route_for("gpt-4o-mini")
    assert unverified is not None
    assert unverified.ssl is False


def test_the_lean_call_goes_where_agent_api_base_says_and_can_be_turned_off() -> None:
    base = "http://llm.internal:8000/v1/"
    route = route_for("openai/local", agent_api_base=base)
    assert route is not None
    assert route.url == "http://llm.internal:8000/v1/chat/completions"
    off = ModelClient(Settings(agent_model="openai/local", agent_api_base=base))
    assert off.transport() == "lean"
    off = ModelClient(
        Settings(agent_model="openai/local", agent_api_base=base, agent_lean_calls=False)
    )
    assert off.transport() == "acompletion"


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
    route = route_for("openai/gpt-4o-mini", agent_api_key="k")
    assert route is not None
    assert route.proxy == "http://user:pw@proxy.internal:3128"


def test_the_self_check_passes_on_this_litellm() -> None:
    route = lean_route("openai/gpt-4o-mini", Settings(agent_api_key="k"))
    assert route is not None
    assert self_check(route) is None
    assert route.supported_params >= {"tools", "response_format"}
    # gpt-4 takes no response_format: checked without it, and such calls take acompletion.
    gpt4 = lean_route("openai/gpt-4", Settings(agent_api_key="k"))
    assert gpt4 is not None
    assert "response_format" not in gpt4.supported_params
    assert self_check(gpt4) is None


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="app.llm"):
        yield caplog


def one_warning(caplog: pytest.LogCaptureFixture) -> str:
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    return record.getMessage()


def test_a_moved_internal_turns_lean_calls_off_with_a_warning(
    warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (litellm.responses is also the name of a function: import the module by its path.)
    bridge_check = importlib.import_module("litellm.responses.bridge_check")
    monkeypatch.delattr(bridge_check, "responses_api_bridge_check")
    assert route_for("openai/gpt-4o-mini", agent_api_key="k") is None
    message = one_warning(warnings)
    assert "lean calls are off for openai/gpt-4o-mini" in message
    assert "litellm.acompletion" in message
    assert "ImportError" in message
    assert "responses_api_bridge_check" in message


def test_a_request_built_differently_turns_lean_calls_off_with_a_warning(
    warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = OpenAIGPTConfig.transform_request

    def renamed(self: OpenAIGPTConfig, *args: object, **kwargs: object) -> dict[str, object]:
        data = original(self, *args, **kwargs)  # type: ignore[arg-type]
        data["functions"] = data.pop("tools")
        return data

    monkeypatch.setattr(OpenAIGPTConfig, "transform_request", renamed)
    assert route_for("openai/gpt-4o-mini", agent_api_key="k") is None
    assert "builds another request body (differs in ['functions', 'tools'])" in one_warning(
        warnings
    )


def test_a_reply_read_differently_turns_lean_calls_off_with_a_warning(
    warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = OpenAIGPTConfig.transform_response

    def no_usage(self: OpenAIGPTConfig, *args: object, **kwargs: object) -> object:
        response = original(self, *args, **kwargs)  # type: ignore[arg-type]
        response.usage = litellm.Usage(prompt_tokens=0, completion_tokens=0)
        return response

    monkeypatch.setattr(OpenAIGPTConfig, "transform_response", no_usage)
    assert route_for("openai/gpt-4o-mini", agent_api_key="k") is None
    assert "reply parser reads a canned reply as" in one_warning(warnings)


async def test_after_a_failed_self_check_calls_go_through_acompletion(
    warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeLLM
) -> None:
    def moved(*args: object, **kwargs: object) -> None:
        raise AttributeError("'OpenAIGPTConfig' object has no attribute '_moved'")

    # acompletion does not parse OpenAI replies with transform_response: only lean calls would.
    monkeypatch.setattr(OpenAIGPTConfig, "transform_response", moved)
    client = ModelClient(
        Settings(agent_model="openai/fake-model", agent_api_base=fake_llm.url, agent_api_key="k")
    )
    try:
        assert client.transport() == "acompletion"
        assert "lean calls are off for openai/fake-model" in one_warning(warnings)
        response = await client.complete([{"role": "user", "content": "q"}])
    finally:
        await client.aclose()
    assert response.choices[0].message.content == answer_for("q")
    assert "aiohttp" not in fake_llm.headers[-1]["user-agent"]
