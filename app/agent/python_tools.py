"""Python functions as tools (AGENT_TOOLS): their JSON schema from the signature, their
arguments validated by pydantic before the call.

`AGENT_TOOLS=package.module:function,package.module` — a module alone stands for the functions
its `__all__` lists. A function may be plain (run in a thread) or async; its docstring is the
description the model reads. A parameter annotated `ToolCallContext` receives the call's
context (its `step_id` is the same when a step in flight at a crash runs again, so a tool with
side effects can de-duplicate on it) and is not part of the schema.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_type_hints

import pydantic
from pydantic_core import PydanticSerializationError

from app.agent.tools import SourceStatus, ToolCallContext, ToolResult, ToolSpec

SOURCE = "python"


@dataclass(frozen=True)
class PythonTool:
    spec: ToolSpec
    function: Callable[..., Any]
    arguments: type[pydantic.BaseModel]  # validates the model's arguments
    context_parameter: str | None  # the parameter that receives the ToolCallContext

    async def call(self, arguments: Mapping[str, object], context: ToolCallContext) -> ToolResult:
        try:
            validated = self.arguments.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
                for error in exc.errors()
            )
            return ToolResult.error(f"invalid arguments for {self.spec.name}: {problems}")
        values = {name: getattr(validated, name) for name in type(validated).model_fields}
        if self.context_parameter is not None:
            values[self.context_parameter] = context
        try:
            if inspect.iscoroutinefunction(self.function):
                value = await self.function(**values)
            else:
                value = await asyncio.to_thread(self.function, **values)
        except Exception as exc:
            return ToolResult.error(f"{type(exc).__name__}: {exc}")
        return ToolResult(content=_text(value))


def tool_of(function: Callable[..., Any], name: str | None = None) -> PythonTool:
    """The tool a function makes: its name, docstring and the JSON schema of its parameters."""
    name = name or function.__name__
    hints = get_type_hints(function)
    fields: dict[str, Any] = {}
    context_parameter = None
    for parameter in inspect.signature(function).parameters.values():
        annotation = hints.get(parameter.name, Any)
        if annotation is ToolCallContext or ToolCallContext in get_args(annotation):
            context_parameter = parameter.name  # `ToolCallContext`, or `ToolCallContext | None`
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ValueError(f"tool {name}: *args and **kwargs cannot be described to a model")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    arguments = pydantic.create_model(
        f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    schema = arguments.model_json_schema()
    schema.pop("title", None)
    for field in schema.get("properties", {}).values():
        field.pop("title", None)
    description = inspect.getdoc(function) or f"The function {name}."
    spec = ToolSpec(name=name, description=description, parameters=schema, source=SOURCE)
    return PythonTool(spec, function, arguments, context_parameter)


def load_functions(config: str) -> list[tuple[str, Callable[..., Any]]]:
    """The functions AGENT_TOOLS names, with their tool names. ValueError for one that
    cannot be loaded, saying which."""
    found: list[tuple[str, Callable[..., Any]]] = []
    for entry in (part.strip() for part in config.split(",")):
        if not entry:
            continue
        module_name, _, attribute = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"AGENT_TOOLS: cannot import {module_name!r}: {exc}") from exc
        names = [attribute] if attribute else list(getattr(module, "__all__", []))
        if not names:
            raise ValueError(f"AGENT_TOOLS: {module_name} has no __all__; name its functions")
        for name in names:
            function = getattr(module, name, None)
            if not callable(function):
                raise ValueError(f"AGENT_TOOLS: {module_name}.{name} is not a function")
            found.append((name, function))
    return found


class PythonTools:
    """The tool source of AGENT_TOOLS' functions."""

    name = SOURCE
    kind = "python"

    def __init__(self, functions: Sequence[tuple[str, Callable[..., Any]]]) -> None:
        self._tools = {name: tool_of(function, name) for name, function in functions}

    @classmethod
    def from_config(cls, config: str) -> PythonTools:
        return cls(load_functions(config))

    async def start(self) -> None:
        """Nothing to connect: the functions were loaded (and checked) when it was built."""

    async def close(self) -> None:
        pass

    def specs(self) -> Sequence[ToolSpec]:
        return [tool.spec for tool in self._tools.values()]

    def status(self) -> SourceStatus:
        return SourceStatus(state="up", tools=len(self._tools))

    async def call(
        self, name: str, arguments: Mapping[str, object], context: ToolCallContext
    ) -> ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult.error(f"there is no Python tool {name!r}")
        return await tool.call(arguments, context)


def _text(value: object) -> str:
    """A function's return value as the text the model reads: a string as it is, anything
    else as JSON (pydantic's encoder: dataclasses, models, dates…)."""
    if isinstance(value, str):
        return value
    try:
        return pydantic.TypeAdapter(Any).dump_json(value).decode()
    except PydanticSerializationError:
        return json.dumps(str(value))
