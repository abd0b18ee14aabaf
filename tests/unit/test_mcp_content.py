"""What the model sees of an MCP server: tool names OpenAI accepts, and results as text."""

from __future__ import annotations

import re

import mcp_types as types

from app.agent.mcp_content import model_tool_name, result_text, tool_specs

OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def test_a_tool_name_is_prefixed_with_its_server() -> None:
    assert model_tool_name("calc", "add") == "calc__add"


def test_characters_openai_refuses_become_underscores() -> None:
    assert model_tool_name("files", "read.file/v2") == "files__read_file_v2"


def test_long_or_clashing_names_are_shortened_and_told_apart() -> None:
    long_one = model_tool_name("files", "x" * 100)
    other = model_tool_name("files", "x" * 99 + "y")
    assert OPENAI_NAME.match(long_one)
    assert OPENAI_NAME.match(other)
    assert long_one != other
    clash = model_tool_name("files", "a_b", taken=["files__a_b"])
    assert clash.startswith("files__a_b_")
    assert OPENAI_NAME.match(clash)


def test_specs_keep_the_servers_own_name_for_each_tool() -> None:
    tools = [
        types.Tool(name="a.b", input_schema={"type": "object"}, description="dotted"),
        types.Tool(name="a_b", input_schema={"properties": {}}, title="Underscored"),
    ]
    specs = tool_specs("srv", tools)
    assert {name: original for name, (_, original) in specs.items()} == {
        "srv__a_b": "a.b",
        next(name for name in specs if name != "srv__a_b"): "a_b",
    }
    second = next(spec for spec, original in specs.values() if original == "a_b")
    assert second.description == "Underscored"  # the title when there is no description
    assert second.parameters == {"properties": {}, "type": "object"}
    assert second.source == "mcp:srv"


def test_text_blocks_are_joined_and_other_blocks_described() -> None:
    result = types.CallToolResult(
        content=[
            types.TextContent(type="text", text="first"),
            types.ImageContent(type="image", data="aGk=", mime_type="image/png"),
            types.TextContent(type="text", text="second"),
        ]
    )
    tool_result = result_text(result)
    assert tool_result.is_error is False
    assert tool_result.content == "first\nsecond\n[image (image/png), not shown]"


def test_structured_content_is_json_when_there_is_no_text() -> None:
    result = types.CallToolResult(content=[], structured_content={"sum": 3, "unit": "€"})
    assert result_text(result).content == '{"sum": 3, "unit": "€"}'


def test_an_error_result_is_an_error_for_the_model() -> None:
    result = types.CallToolResult(
        content=[types.TextContent(type="text", text="no such file")], is_error=True
    )
    assert (result_text(result).is_error, result_text(result).content) == (
        True,
        "error: no such file",
    )
    assert result_text(types.CallToolResult(content=[], is_error=True)).is_error is True
