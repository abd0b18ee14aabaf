"""The lean transport's start-up check: litellm's internals still do what the transport needs.

Before a model's calls take the lean route, a canned request (a conversation with a tool call
and its result, a tool, a JSON-schema response format) and a canned reply (content, parallel
tool calls, usage) go through the route's request builder and reply parser. Anything missing,
raising or answering differently turns lean calls off for that model, with one WARNING naming
the reason; its calls then go through `litellm.acompletion`.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import httpx

from app.config import Settings
from app.llm.errors import error_text
from app.llm.lean import LeanRoute, build_request, lean_route, parse_reply
from app.llm.messages import Message, ModelRequest, ResponseFormat, Tool

if TYPE_CHECKING:
    from litellm import ModelResponse

logger = logging.getLogger(__name__)

CANNED_MESSAGES: list[Message] = [
    {"role": "system", "content": "Use the tools."},
    {"role": "user", "content": "What is 1 + 2?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": "3"},
]
CANNED_TOOLS: list[Tool] = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]
CANNED_FORMAT: ResponseFormat = {
    "type": "json_schema",
    "json_schema": {
        "name": "sum",
        "schema": {"type": "object", "properties": {"sum": {"type": "integer"}}},
        "strict": True,
    },
}
CANNED_TOOL_CALLS = [
    ("call_b", "add", '{"a": 1, "b": 2}'),
    ("call_c", "add", '{"a": 3, "b": 4}'),
]
CANNED_REPLY = {
    "id": "chatcmpl-check",
    "object": "chat.completion",
    "created": 0,
    "model": "check",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Adding.",
                "tool_calls": [
                    {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}
                    for id_, name, args in CANNED_TOOL_CALLS
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
}
EXPECTED_REPLY = ("Adding.", CANNED_TOOL_CALLS, "tool_calls", (11, 7, 18))


def checked_lean_route(model: str, settings: Settings) -> LeanRoute | None:
    """`lean_route(model)` if the route passes the self-check; None (and one WARNING naming
    the reason, unless the model simply is not one the lean transport serves) otherwise."""
    try:
        route = lean_route(model, settings)
        problem = None if route is None else self_check(route)
    except Exception as exc:  # this litellm lacks an internal the route uses, or changed it
        route, problem = None, f"litellm's internals differ: {error_text(exc)}"
    if problem is not None:
        logger.warning(
            "lean calls are off for %s, its calls go through litellm.acompletion: %s. "
            "Install litellm in the range pyproject.toml names, or set AGENT_LEAN_CALLS=false "
            "to silence this.",
            model,
            problem,
        )
        return None
    return route


def self_check(route: LeanRoute) -> str | None:
    """Why `route` would not carry calls as litellm.acompletion does, or None."""
    request = ModelRequest(CANNED_MESSAGES, tools=CANNED_TOOLS, response_format=CANNED_FORMAT)
    # A model that takes no response_format (gpt-4) is checked without it: its calls with one
    # go through acompletion, which says so.
    if not route.serves(request):
        request = ModelRequest(CANNED_MESSAGES, tools=CANNED_TOOLS)
        if not route.serves(request):
            return "its OpenAI configuration no longer passes tools on"
    headers, body = build_request(route, request)
    messages = [{k: v for k, v in m.items() if v is not None} for m in CANNED_MESSAGES]
    expected = {"model": route.model, "messages": messages, **request.params()}
    sent = json.loads(body)
    if sent != expected:
        keys = sorted(
            key for key in expected.keys() | sent.keys() if sent.get(key) != expected.get(key)
        )
        return f"its OpenAI configuration builds another request body (differs in {keys})"
    if route.api_key is not None and headers.get("Authorization") != f"Bearer {route.api_key}":
        return "its OpenAI configuration no longer sets the Authorization header"
    raw = httpx.Response(200, json=CANNED_REPLY, request=route.request)
    got = reply_summary(parse_reply(route, request, raw))
    if got != EXPECTED_REPLY:
        return f"its reply parser reads a canned reply as {got!r}, not {EXPECTED_REPLY!r}"
    return None


def reply_summary(
    response: ModelResponse,
) -> tuple[object, list[tuple[object, object, object]], object, tuple[object, object, object]]:
    """What the agent reads of a reply: content, tool calls, finish reason and usage."""
    choice = response.choices[0]
    message = getattr(choice, "message", None)
    calls = getattr(message, "tool_calls", None) or []
    usage = getattr(response, "usage", None)
    return (
        getattr(message, "content", None),
        [(call.id, call.function.name, call.function.arguments) for call in calls],
        getattr(choice, "finish_reason", None),
        (
            getattr(usage, "prompt_tokens", None),
            getattr(usage, "completion_tokens", None),
            getattr(usage, "total_tokens", None),
        ),
    )
