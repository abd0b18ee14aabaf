"""Model calls: the one model interface, its two transports, the offline model, error classes.

May import only `app.config`, `app.errors`, `app.states` and third-party libraries (litellm,
openai, aiohttp, httpx) — never app.db, app.engine, app.workflows or app.api.

litellm takes seconds to import: this package imports it inside functions, once `load_litellm()`
(run when a ModelClient is built) has set it up, so importing the package stays cheap.
"""

from app.llm.agent import Agent
from app.llm.client import ModelClient, Transport, call_options
from app.llm.errors import classify, error_text, provider_error_text, retry_after_seconds
from app.llm.messages import (
    AssistantMessage,
    FunctionCall,
    FunctionSpec,
    JsonObjectFormat,
    JsonSchema,
    JsonSchemaFormat,
    Message,
    ModelRequest,
    ResponseFormat,
    SystemMessage,
    Tool,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from app.llm.offline import OFFLINE_PROVIDER, load_litellm, offline_answer
from app.llm.replies import ModelReply, reply_of

__all__ = [
    "OFFLINE_PROVIDER",
    "Agent",
    "AssistantMessage",
    "FunctionCall",
    "FunctionSpec",
    "JsonObjectFormat",
    "JsonSchema",
    "JsonSchemaFormat",
    "Message",
    "ModelClient",
    "ModelReply",
    "ModelRequest",
    "ResponseFormat",
    "SystemMessage",
    "Tool",
    "ToolCall",
    "ToolMessage",
    "Transport",
    "UserMessage",
    "call_options",
    "classify",
    "error_text",
    "load_litellm",
    "offline_answer",
    "provider_error_text",
    "reply_of",
    "retry_after_seconds",
]
