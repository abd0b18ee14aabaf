"""What a model call takes: chat messages, tools and a response format, in OpenAI's chat shape.

These are the subset of litellm's (and OpenAI's) request types the agent uses, as TypedDicts that
import nothing: they travel as plain JSON-able dicts, so a journal can store them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypeAlias, TypedDict

# A JSON Schema, or the JSON-able object a schema describes.
JsonObject: TypeAlias = dict[str, object]


class FunctionCall(TypedDict):
    name: str
    arguments: str  # JSON text, as the model wrote it (it may not parse)


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class SystemMessage(TypedDict):
    role: Literal["system"]
    content: str


class UserMessage(TypedDict):
    role: Literal["user"]
    content: str


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None
    tool_calls: NotRequired[list[ToolCall]]


class ToolMessage(TypedDict):
    role: Literal["tool"]
    tool_call_id: str
    content: str


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionSpec(TypedDict):
    name: str
    description: NotRequired[str]
    parameters: NotRequired[JsonObject]  # the arguments' JSON Schema
    strict: NotRequired[bool]


class Tool(TypedDict):
    type: Literal["function"]
    function: FunctionSpec


class JsonSchema(TypedDict):
    name: str
    schema: JsonObject
    description: NotRequired[str]
    strict: NotRequired[bool]


class JsonSchemaFormat(TypedDict):
    """Structured output: the answer is JSON matching `json_schema.schema`."""

    type: Literal["json_schema"]
    json_schema: JsonSchema


class JsonObjectFormat(TypedDict):
    """JSON mode: the answer is a JSON object, of no particular schema."""

    type: Literal["json_object"]


ResponseFormat: TypeAlias = JsonSchemaFormat | JsonObjectFormat


@dataclass(frozen=True)
class ModelRequest:
    """One model call's input, whichever transport carries it."""

    messages: Sequence[Message]
    tools: Sequence[Tool] | None = None
    response_format: ResponseFormat | None = None

    def params(self) -> dict[str, object]:
        """The OpenAI parameters besides the model and the messages (only those given)."""
        params: dict[str, object] = {}
        if self.tools:  # an empty list is no tools: OpenAI refuses `"tools": []`
            params["tools"] = list(self.tools)
        if self.response_format is not None:
            params["response_format"] = self.response_format
        return params
