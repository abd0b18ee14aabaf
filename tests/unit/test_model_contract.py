"""The model interface's contract, held on both transports: the same scripted replies from the
fake OpenAI-compatible server, sent through the lean transport and through litellm.acompletion,
give equal ModelResponses and the same exception classes. A litellm upgrade that moves an
internal the lean transport relies on fails here, not in production."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
import pytest

from app.config import Settings
from app.errors import PermanentError, TransientError
from app.llm import Message, ModelClient, ResponseFormat, Tool, classify, error_text
from tests.fakes.llm import Call, FakeLLM, Json, Raw, Reply, Status, Text, ToolCalls, Usage

MODEL = "openai/fake-model"
QUESTION: list[Message] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 1 + 2, and 3 + 4?"},
]
# A later turn of an agent run: the tool calls the model asked for and their results.
LATER_TURN: list[Message] = [
    *QUESTION,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}},
            {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "3"},
    {"role": "tool", "tool_call_id": "call_2", "content": "7"},
]
TOOLS: list[Tool] = [
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
SUM_FORMAT: ResponseFormat = {
    "type": "json_schema",
    "json_schema": {
        "name": "sums",
        "schema": {
            "type": "object",
            "properties": {"sums": {"type": "array", "items": {"type": "integer"}}},
            "required": ["sums"],
        },
        "strict": True,
    },
}


@pytest.fixture
async def clients(fake_llm: FakeLLM) -> AsyncIterator[dict[str, ModelClient]]:
    """One client per transport, against the fake LLM."""
    made = {
        transport: ModelClient(
            Settings(
                agent_model=MODEL,
                agent_api_base=fake_llm.url,
                agent_api_key="k",
                agent_timeout_seconds=30,
                agent_lean_calls=transport == "lean",
            )
        )
        for transport in ("lean", "acompletion")
    }
    for transport, client in made.items():
        assert client.transport() == transport
    yield made
    for client in made.values():
        await client.aclose()


def summary(response: litellm.ModelResponse) -> dict[str, Any]:
    """What the agent reads of a reply (and so what both transports must agree on)."""
    [choice] = response.choices
    message = choice.message
    return {
        "content": message.content,
        "tool_calls": [
            (call.id, call.type, call.function.name, call.function.arguments)
            for call in message.tool_calls or []
        ],
        "finish_reason": choice.finish_reason,
        "usage": (
            response.usage.prompt_tokens,
            response.usage.completion_tokens,
            response.usage.total_tokens,
        ),
        "model": response.model,
    }


ANSWERS: dict[str, tuple[Reply, dict[str, Any], dict[str, Any]]] = {
    # name: (the fake's reply, the call's arguments, what the agent must read)
    "text": (
        Text("3 and 7.", usage=Usage(12, 5)),
        {"messages": QUESTION},
        {"content": "3 and 7.", "tool_calls": [], "finish_reason": "stop", "usage": (12, 5, 17)},
    ),
    "one tool call": (
        ToolCalls(Call("add", {"a": 1, "b": 2}, id="call_1"), usage=Usage(40, 9)),
        {"messages": QUESTION, "tools": TOOLS},
        {
            "content": None,
            "tool_calls": [("call_1", "function", "add", '{"a": 1, "b": 2}')],
            "finish_reason": "tool_calls",
            "usage": (40, 9, 49),
        },
    ),
    "parallel tool calls": (
        ToolCalls(
            Call("add", {"a": 1, "b": 2}, id="call_1"),
            Call("add", '{"a": 3, "b": 4}', id="call_2"),
            content="Adding both.",
        ),
        {"messages": QUESTION, "tools": TOOLS},
        {
            "content": "Adding both.",
            "tool_calls": [
                ("call_1", "function", "add", '{"a": 1, "b": 2}'),
                ("call_2", "function", "add", '{"a": 3, "b": 4}'),
            ],
            "finish_reason": "tool_calls",
            "usage": (1, 1, 2),
        },
    ),
    "after tool results": (
        Text("3 and 7."),
        {"messages": LATER_TURN, "tools": TOOLS},
        {"content": "3 and 7.", "tool_calls": [], "finish_reason": "stop", "usage": (1, 1, 2)},
    ),
    "json answer": (
        Json({"sums": [3, 7]}, usage=Usage(30, 8)),
        {"messages": QUESTION, "response_format": SUM_FORMAT},
        {
            "content": '{"sums": [3, 7]}',
            "tool_calls": [],
            "finish_reason": "stop",
            "usage": (30, 8, 38),
        },
    ),
    "usage as reported": (
        # A provider's total need not be the sum (cached or reasoning tokens): kept as sent.
        Text("ok", usage=Usage(100, 20, 150)),
        {"messages": QUESTION},
        {"content": "ok", "tool_calls": [], "finish_reason": "stop", "usage": (100, 20, 150)},
    ),
}


@pytest.mark.parametrize("name", ANSWERS)
async def test_both_transports_read_a_reply_alike(
    name: str, clients: dict[str, ModelClient], fake_llm: FakeLLM
) -> None:
    reply, arguments, expected = ANSWERS[name]
    fake_llm.script_next(reply, reply)
    lean = await clients["lean"].complete(**arguments)
    acompletion = await clients["acompletion"].complete(**arguments)
    assert summary(lean) == summary(acompletion)
    assert summary(lean).items() >= expected.items()
    # Each kept the reply's own id (the fake numbers its replies).
    assert [lean.id, acompletion.id] == [f"chatcmpl-{len(fake_llm.calls) - n}" for n in (1, 0)]
    # And they asked the same: the model's name, the messages and the parameters, as sent.
    lean_body, acompletion_body = fake_llm.calls[-2:]
    assert lean_body == acompletion_body
    # litellm leaves out the None fields of messages (an assistant's `content` beside tool calls).
    messages = [{k: v for k, v in m.items() if v is not None} for m in arguments["messages"]]
    assert lean_body == {"model": "fake-model", **arguments, "messages": messages}


FAILURES: dict[str, tuple[Reply, type[Exception], type[Exception], str]] = {
    # name: (the fake's reply, litellm's exception class, the service's class, recorded text)
    "400": (Status(400, "bad thing"), litellm.BadRequestError, PermanentError, "bad thing"),
    "401": (
        Status(401, "Incorrect API key provided: sk-wrong"),
        litellm.AuthenticationError,
        PermanentError,
        "AuthenticationError: Incorrect API key provided: sk-wrong",
    ),
    "404": (Status(404), litellm.NotFoundError, PermanentError, "fake failure 404"),
    "429": (Status(429), litellm.RateLimitError, TransientError, "fake failure 429"),
    "500": (Status(500), litellm.InternalServerError, TransientError, "fake failure 500"),
    "503": (Status(503), litellm.ServiceUnavailableError, TransientError, "fake failure 503"),
    "html page": (
        Raw("<html>bad gateway page</html>", content_type="text/html"),
        litellm.InternalServerError,
        TransientError,
        "InternalServerError: ",
    ),
    "json without choices": (
        Raw('{"id": "chatcmpl-1", "object": "chat.completion"}'),
        litellm.InternalServerError,
        TransientError,
        "choices",
    ),
}


@pytest.mark.parametrize("name", FAILURES)
async def test_both_transports_fail_alike(
    name: str, clients: dict[str, ModelClient], fake_llm: FakeLLM
) -> None:
    reply, litellm_class, service_class, text = FAILURES[name]
    fake_llm.script_next(reply, reply)
    raised: dict[str, BaseException] = {}
    for transport, client in clients.items():
        with pytest.raises(litellm_class) as failure:
            await client.complete(QUESTION)
        raised[transport] = failure.value
    lean, acompletion = raised["lean"], raised["acompletion"]
    assert type(lean) is type(acompletion)
    assert getattr(lean, "status_code", None) == getattr(acompletion, "status_code", None)
    for exc in raised.values():
        recorded = classify(exc)
        assert type(recorded) is service_class
        assert text in str(recorded)
        assert str(recorded).startswith(f"{type(exc).__name__}: ")
        assert "litellm." not in str(recorded)


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_refused_connection_fails_alike_and_reads_cleanly(
    refusing_port: int, scheme: str
) -> None:
    raised: dict[str, BaseException] = {}
    for lean in (True, False):
        client = ModelClient(
            Settings(
                agent_model=MODEL,
                agent_api_base=f"{scheme}://127.0.0.1:{refusing_port}/v1",
                agent_api_key="k",
                agent_lean_calls=lean,
            )
        )
        try:
            with pytest.raises(litellm.InternalServerError) as failure:
                await client.complete(QUESTION)
        finally:
            await client.aclose()
        raised["lean" if lean else "acompletion"] = failure.value
    texts = {transport: error_text(exc) for transport, exc in raised.items()}
    expected = f"InternalServerError: Connection error: cannot connect to 127.0.0.1:{refusing_port}"
    for transport, text in texts.items():
        assert text.startswith(expected), (transport, text)
        assert " at 0x" not in text
        assert "ssl:" not in text
        assert type(classify(raised[transport])) is TransientError
    assert texts["lean"] == texts["acompletion"]


async def test_past_the_deadline_both_transports_raise_litellms_timeout(
    fake_llm: FakeLLM,
) -> None:
    fake_llm.hold(QUESTION[-1]["content"])  # type: ignore[arg-type]
    for lean in (True, False):
        client = ModelClient(
            Settings(
                agent_model=MODEL,
                agent_api_base=fake_llm.url,
                agent_api_key="k",
                agent_timeout_seconds=0.5,
                agent_lean_calls=lean,
            )
        )
        try:
            with pytest.raises(litellm.Timeout) as failure:
                await client.complete(QUESTION)
        finally:
            await client.aclose()
        recorded = classify(failure.value)
        assert type(recorded) is TransientError
        assert str(recorded).startswith("Timeout: ")
