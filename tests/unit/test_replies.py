"""A model turn's reply as the agent journals it: the assistant message with its tool calls,
tokens, and the cost from litellm's local cost map (None for a model it does not price)."""

from __future__ import annotations

from typing import Any

import pytest

from app.llm import load_litellm, reply_of


def response(model: str, message: dict[str, object]) -> Any:
    litellm = load_litellm()
    return litellm.ModelResponse(
        model=model,
        choices=[{"index": 0, "finish_reason": "stop", "message": message}],
        usage=litellm.Usage(prompt_tokens=1000, completion_tokens=500),
    )


def test_tool_calls_tokens_and_cost() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
        ],
    }
    reply = reply_of(response("gpt-4o-mini", message))
    assert reply.message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
        ],
    }
    assert (reply.input_tokens, reply.output_tokens, reply.tokens) == (1000, 500, 1500)
    assert reply.cost_usd is not None
    assert reply.cost_usd > 0


def test_an_unknown_models_cost_is_none_and_text_is_storable() -> None:
    message = {"role": "assistant", "content": "a\x00b"}
    reply = reply_of(response("openai/no-such-model-xyz", message))
    assert reply.message == {"role": "assistant", "content": "ab"}
    assert reply.cost_usd is None


def test_an_unknown_model_is_priced_once(monkeypatch: pytest.MonkeyPatch) -> None:
    message = {"role": "assistant", "content": "hi"}
    litellm = load_litellm()
    price, priced = litellm.completion_cost, []

    def counted(**kwargs: Any) -> float:
        priced.append(kwargs["completion_response"].model)
        return float(price(**kwargs))

    monkeypatch.setattr(litellm, "completion_cost", counted)
    for _ in range(3):
        assert reply_of(response("openai/never-priced-model", message)).cost_usd is None
        assert reply_of(response("gpt-4o-mini", message)).cost_usd is not None
    # The unknown model once, the known one every time.
    assert priced == ["openai/never-priced-model"] + ["gpt-4o-mini"] * 3
