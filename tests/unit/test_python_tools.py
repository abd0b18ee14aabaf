"""Python functions as tools: the schema a model sees comes from the signature, arguments are
validated before the call, the call's context reaches a parameter that asks for it, and every
failure is a result for the model."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.agent import PythonTools, ToolCallContext
from app.agent.python_tools import load_functions, tool_of
from app.llm.offline_tools import next_calls, operations

CONTEXT = ToolCallContext(step_id="step-1", workflow_key="k")


def greet(name: str, times: int = 1, context: ToolCallContext | None = None) -> str:
    """Greet someone."""
    assert context is not None
    return f"hello {name} x{times} ({context.step_id})"


def with_context(text: str, context: ToolCallContext) -> dict[str, str]:
    """Echo the text with the step id."""
    return {"text": text, "step": context.step_id, "thread": threading.current_thread().name}


async def slow(seconds: float) -> list[int]:
    """Wait, then answer."""
    await asyncio.sleep(seconds)
    return [1, 2]


def test_the_schema_comes_from_the_signature_and_leaves_the_context_out() -> None:
    spec = tool_of(with_context).spec
    assert spec.name == "with_context"
    assert spec.description == "Echo the text with the step id."
    assert spec.source == "python"
    assert spec.parameters == {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    }
    greeting = tool_of(greet).spec.parameters
    assert set(greeting["properties"]) == {"name", "times"}
    assert greeting["required"] == ["name"]
    assert greeting["properties"]["times"] == {"type": "integer", "default": 1}


async def test_calls_validate_pass_the_context_and_report_failures() -> None:
    tools = PythonTools([("with_context", with_context), ("slow", slow), ("greet", greet)])
    result = await tools.call("with_context", {"text": "hi"}, CONTEXT)
    assert not result.is_error
    assert '"step":"step-1"' in result.content
    assert '"thread":"MainThread"' not in result.content  # sync functions run in a thread
    assert (await tools.call("slow", {"seconds": 0}, CONTEXT)).content == "[1,2]"
    invalid = await tools.call("greet", {"times": "many"}, CONTEXT)
    assert invalid.is_error
    assert "name: Field required" in invalid.content
    assert "times: Input should be a valid integer" in invalid.content
    greeted = await tools.call("greet", {"name": "x"}, CONTEXT)
    assert greeted.content == "hello x x1 (step-1)"
    extra = await tools.call("greet", {"name": "x", "shout": True}, CONTEXT)
    assert "shout: Extra inputs are not permitted" in extra.content
    assert (await tools.call("missing", {}, CONTEXT)).is_error


def test_agent_tools_names_modules_and_functions() -> None:
    names = [name for name, _ in load_functions("app.agent.examples, app.agent.examples:add")]
    assert names == ["add", "current_time", "multiply", "add"]
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        load_functions("no_such_module:f")
    with pytest.raises(ValueError, match="has no __all__"):
        load_functions("app.agent.tools")
    with pytest.raises(ValueError, match="is not a function"):
        load_functions("app.agent.examples:nothing")


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ("add 2 and 3", [("add", ("2", "3"))]),
        ("What is 6 times 7?", [("multiply", ("6", "7"))]),
        ("what time is it", [("current_time", ())]),
        (
            "Add 2 and 3, then multiply the result by 4",
            [("add", ("2", "3")), ("multiply", ("", "4"))],
        ),
        ("tell me a story", []),
    ],
)
def test_the_offline_model_reads_the_calls_a_query_asks_for(
    query: str, wanted: list[tuple[str, tuple[str, ...]]]
) -> None:
    assert [(o.tool, o.operands) for o in operations(query)] == wanted


def test_the_offline_model_calls_independent_tools_together_and_chains_the_rest() -> None:
    offered = {"add", "multiply", "current_time"}
    both = next_calls("what is 2 plus 3 and 6 times 7", [], offered)
    assert both == [("add", '{"a": 2, "b": 3}'), ("multiply", '{"a": 6, "b": 7}')]
    chained = "add 2 and 3, then multiply the result by 4"
    assert next_calls(chained, [], offered) == [("add", '{"a": 2, "b": 3}')]
    assert next_calls(chained, ["5"], offered) == [("multiply", '{"a": 5, "b": 4}')]
    assert next_calls(chained, ["5", "20"], offered) == []
    assert next_calls(chained, [], {"add"}) is None  # multiply not offered: a plain answer
