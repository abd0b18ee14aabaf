"""Loading litellm, and the built-in offline model it serves when no model is configured.

The offline model is a litellm custom provider, so its calls take the same path as a real
model's (litellm.acompletion, a ModelResponse with usage) and the service works end to end
without a key or a network.
"""

from __future__ import annotations

import json
import os
import textwrap
from types import ModuleType
from typing import TYPE_CHECKING

from app.config import OFFLINE_MODEL
from app.llm.offline_schema import instance_of
from app.llm.offline_tools import approval_answer, asks_approval, next_calls, summary
from app.states import APPROVAL_TOOL

if TYPE_CHECKING:
    from litellm.llms.custom_llm import CustomLLM

OFFLINE_PROVIDER = OFFLINE_MODEL.split("/", 1)[0]


def offline_answer(query: str, instructions: str) -> str:
    """The offline model's reply: deterministic, and says how to get a real one."""
    quoted = textwrap.shorten(" ".join(query.split()), width=300, placeholder=" …")
    return (
        f"[offline model] You asked: {quoted}\n\n"
        "This answer comes from agent-notify's built-in offline model, which runs when no LLM "
        "is configured. The request went through the whole durable path - accepted, executed, "
        "resolved and delivered - just as it would with a real model.\n\n"
        "To get real answers, set AGENT_MODEL to a litellm model name (for example "
        "openai/gpt-4o-mini) and the provider's key (AGENT_API_KEY, or the provider's own "
        "variable such as OPENAI_API_KEY)."
    )


def load_litellm() -> ModuleType:
    """Import litellm without network access, with the offline model registered (again, if
    something replaced litellm's provider list since).

    Importing litellm takes seconds: the service does it in its start-up thread (building a
    ModelClient), and this package's modules import it inside functions, after this ran.
    """
    # Without this, importing litellm fetches its model cost map from the internet.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    if not any(item["provider"] == OFFLINE_PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": OFFLINE_PROVIDER, "custom_handler": _offline_model()},
        ]
    return litellm


def _offline_model() -> CustomLLM:
    import litellm
    from litellm.llms.custom_llm import CustomLLM

    class OfflineModel(CustomLLM):
        async def acompletion(  # type: ignore[override]  # litellm passes many more arguments
            self, model: str, messages: list[dict[str, object]], **kwargs: object
        ) -> litellm.ModelResponse:
            system = _last_text(messages, "system", first=True)
            user = _last_text(messages, "user")
            message = _offline_message(messages, user, system, _offered(kwargs))
            schema = _schema_of(kwargs)
            if schema is not None and "tool_calls" not in message:
                # Structured output: an instance of the schema instead of the text.
                message = {"role": "assistant", "content": json.dumps(instance_of(schema))}
            answer = message.get("content")
            return litellm.ModelResponse(
                model=model,
                choices=[
                    {
                        "index": 0,
                        "finish_reason": "tool_calls" if "tool_calls" in message else "stop",
                        "message": message,
                    }
                ],
                # Words stand in for tokens: deterministic, and enough to show usage end to end.
                usage=litellm.Usage(
                    prompt_tokens=sum(len(str(m.get("content") or "").split()) for m in messages),
                    completion_tokens=len(str(answer or message).split()),
                ),
            )

    return OfflineModel()


def _offline_message(
    messages: list[dict[str, object]], user: str, system: str, offered: set[str]
) -> dict[str, object]:
    """The offline model's assistant message: tool calls to the example tools when they are
    offered and the query asks for them, then a text quoting their results; else its plain
    answer."""
    made, results = _since_user(messages)
    if APPROVAL_TOOL in offered and asks_approval(user):
        # First the approval; then, approved, the plain answer.
        if not results:
            question = textwrap.shorten(" ".join(user.split()), width=200, placeholder=" …")
            return _calls(
                [(APPROVAL_TOOL, json.dumps({"question": f"May I go ahead: {question}"}))]
            )
        return {
            "role": "assistant",
            "content": approval_answer(results[0], offline_answer(user, system)),
        }
    calls = next_calls(user, results, offered)
    if calls is None:
        return {"role": "assistant", "content": offline_answer(user, system)}
    if not calls:
        return {"role": "assistant", "content": summary(made, results)}
    return _calls(calls, first=len(results))


def _calls(calls: list[tuple[str, str]], *, first: int = 0) -> dict[str, object]:
    """An assistant message calling the tools (name, JSON arguments)."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{first + index}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            for index, (name, arguments) in enumerate(calls)
        ],
    }


def _since_user(messages: list[dict[str, object]]) -> tuple[list[tuple[str, str]], list[str]]:
    """The tool calls made since the last user message, and the results they got, in order."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    made: list[tuple[str, str]] = []
    results: list[str] = []
    for message in messages[last_user + 1 :]:
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            made.append((str(function.get("name")), str(function.get("arguments") or "{}")))
        if message.get("role") == "tool":
            results.append(str(message.get("content")))
    return made, results


def _offered(kwargs: dict[str, object]) -> set[str]:
    """The names of the tools the call offers (litellm hands them in `optional_params`)."""
    params = kwargs.get("optional_params")
    tools = params.get("tools") if isinstance(params, dict) else None
    names: set[str] = set()
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _schema_of(kwargs: dict[str, object]) -> object | None:
    """The JSON Schema of the call's `response_format`, if it has one."""
    params = kwargs.get("optional_params")
    response_format = params.get("response_format") if isinstance(params, dict) else None
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    json_schema = response_format.get("json_schema")
    return json_schema.get("schema") if isinstance(json_schema, dict) else None


def _last_text(messages: list[dict[str, object]], role: str, *, first: bool = False) -> str:
    """The text of the last (or first) message of `role`, "" if there is none."""
    found = [m.get("content") for m in messages if m.get("role") == role]
    if not found:
        return ""
    content = found[0] if first else found[-1]
    return content if isinstance(content, str) else ""
