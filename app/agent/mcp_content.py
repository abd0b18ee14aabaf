"""What crosses between an MCP server and the model: tool names the model accepts, tool specs,
and a tool's result as the text the model reads."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

import mcp_types as types

from app.agent.tools import ToolResult, ToolSpec
from app.mcp_config import SEPARATOR

# OpenAI's rule for function names, `^[a-zA-Z0-9_-]{1,64}$`; the other providers' are looser.
MAX_TOOL_NAME = 64
NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def model_tool_name(server: str, tool: str, taken: Iterable[str] = ()) -> str:
    """`<server>__<tool>`, with each character OpenAI refuses in `tool` made `_`; shortened
    and made unique by a digest of the tool's own name when too long or already `taken`."""
    name = f"{server}{SEPARATOR}{NOT_ALLOWED.sub('_', tool) or '_'}"
    if len(name) <= MAX_TOOL_NAME and name not in set(taken):
        return name
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{name[: MAX_TOOL_NAME - len(digest) - 1]}_{digest}"


def tool_specs(server: str, tools: Iterable[types.Tool]) -> dict[str, tuple[ToolSpec, str]]:
    """Each tool's spec under the name the model sees, with the server's own name for it."""
    found: dict[str, tuple[ToolSpec, str]] = {}
    for tool in tools:
        name = model_tool_name(server, tool.name, found)
        parameters: dict[str, object] = dict(tool.input_schema)
        parameters.setdefault("type", "object")
        spec = ToolSpec(
            name=name,
            description=tool.description or tool.title or "",
            parameters=parameters,
            source=f"mcp:{server}",
        )
        found[name] = (spec, tool.name)
    return found


def result_text(result: types.CallToolResult) -> ToolResult:
    """The result as the model reads it: the text blocks joined; the structured content as
    JSON when no block is text; any other block described in a line."""
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    others = [
        describe(block) for block in result.content if not isinstance(block, types.TextContent)
    ]
    if not texts and result.structured_content is not None:
        texts = [json.dumps(result.structured_content, ensure_ascii=False)]
    content = "\n".join(texts + others)
    if result.is_error:
        return ToolResult.error(content or "the tool failed and said nothing more")
    return ToolResult(content=content)


def describe(block: types.ContentBlock) -> str:
    if isinstance(block, types.ImageContent | types.AudioContent):
        kind = "image" if isinstance(block, types.ImageContent) else "audio"
        return f"[{kind} ({block.mime_type}), not shown]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.uri}" + (f" ({block.name})]" if block.name else "]")
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return resource.text
        return f"[resource {resource.uri} ({resource.mime_type or 'binary'}), not shown]"
    return f"[{type(block).__name__}, not shown]"
