"""A model turn's reply as the agent journals it: the assistant message (with its tool calls)
and the turn's usage, tokens and cost (from litellm's local cost map, where it knows the model)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.errors import TransientError
from app.llm.messages import AssistantMessage, ToolCall

if TYPE_CHECKING:
    from litellm import ModelResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelReply:
    message: AssistantMessage
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None  # None when litellm does not know the model's price

    @property
    def tokens(self) -> int:
        return (self.input_tokens or 0) + (self.output_tokens or 0)


def reply_of(response: ModelResponse) -> ModelReply:
    """The assistant message and usage of a chat completion. TransientError when it has no
    choice (a provider's hiccup, worth another attempt)."""
    if not response.choices:
        raise TransientError("the model answered with no choices")
    message = getattr(response.choices[0], "message", None)
    content = getattr(message, "content", None)
    assistant: AssistantMessage = {
        "role": "assistant",
        "content": storable(content) if isinstance(content, str) else None,
    }
    calls = [_tool_call(call, index) for index, call in enumerate(_calls_of(message))]
    if calls:
        assistant["tool_calls"] = calls
    usage = getattr(response, "usage", None)
    return ModelReply(
        message=assistant,
        input_tokens=_count(getattr(usage, "prompt_tokens", None)),
        output_tokens=_count(getattr(usage, "completion_tokens", None)),
        cost_usd=cost_of(response),
    )


# The models (as replies name them) litellm could not price, asked once: for a name it does not
# know, litellm searches its cost map's fallbacks before it gives up, a tenth of an agent step's
# CPU (docs/benchmarks.md) on every model turn. Its cost map does not change while the service
# runs. Bounded, as runs may name any model.
UNPRICED_MODELS: set[str] = set()
UNPRICED_MODELS_MAX = 1024


def cost_of(response: ModelResponse) -> float | None:
    """The call's price in USD by litellm's local cost map; None for a model it does not map."""
    import litellm

    model = getattr(response, "model", None)
    if model in UNPRICED_MODELS:
        return None
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # litellm raises for a model it cannot price
        if isinstance(model, str) and len(UNPRICED_MODELS) < UNPRICED_MODELS_MAX:
            UNPRICED_MODELS.add(model)
        return None
    return float(cost) if isinstance(cost, int | float) and cost > 0 else None


def storable(text: str) -> str:
    """Postgres text holds neither NUL nor lone surrogates: a model emitting one must not make
    its answer unstorable."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _calls_of(message: object) -> list[object]:
    calls = getattr(message, "tool_calls", None)
    return list(calls) if isinstance(calls, list) else []


def _tool_call(call: object, index: int) -> ToolCall:
    function = getattr(call, "function", None)
    name = getattr(function, "name", None)
    arguments = getattr(function, "arguments", None)
    call_id = getattr(call, "id", None)
    return {
        "id": call_id if isinstance(call_id, str) and call_id else f"call_{index}",
        "type": "function",
        "function": {
            "name": name if isinstance(name, str) else "",
            "arguments": arguments if isinstance(arguments, str) else "",
        },
    }


def _count(value: object) -> int | None:
    return value if isinstance(value, int) else None
