"""Tools: what the model may call, whatever serves them.

Each source of tools (the Python functions of AGENT_TOOLS, each MCP server of AGENT_MCP_CONFIG)
is a `ToolSource`; the `Toolbox` holds them all, offers the model their specs and routes each
call to its source. A tool's failure is a result (`is_error`), handed back to the model: it
never fails the run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from app.llm import Tool
from app.llm.messages import JsonObject

logger = logging.getLogger(__name__)

SourceState = Literal["up", "down", "starting"]
# The source of the built-in request_approval tool (app/agent/approval.py).
BUILTIN_APPROVAL_SOURCE = "approval"


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the model sees it, and where it comes from."""

    name: str  # unique across sources: an MCP server's tools are `<server>__<tool>`
    description: str
    parameters: JsonObject  # the arguments' JSON Schema (an object schema)
    source: str  # "python" or "mcp:<server>"

    def for_model(self) -> Tool:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gave back, as the text the model reads; `is_error` when it failed."""

    content: str
    is_error: bool = False

    @classmethod
    def error(cls, message: str) -> ToolResult:
        return cls(content=f"error: {message}", is_error=True)


@dataclass(frozen=True)
class ToolCallContext:
    """What a tool learns about the call besides its arguments.

    `step_id` is the same every time this step is executed: a step in flight at a crash runs
    again with it, so a tool with side effects can de-duplicate on it (MCP tools receive it
    in the request's `_meta` as `agent_notify/step_id`).
    """

    step_id: str
    workflow_key: str


@dataclass
class SourceStatus:
    """A source's state, for `/readyz` details and `GET /agent`."""

    state: SourceState
    tools: int = 0
    error: str | None = None
    detail: dict[str, str] = field(default_factory=dict)


class ToolSource(Protocol):
    """One place tools come from."""

    name: str  # "python", or the MCP server's name
    kind: str  # "python", "mcp" or "builtin"

    async def start(self) -> None:
        """Connect and discover the tools. Never raises for a server that is down: the source
        is then `down` (logged), its tools unavailable, and it keeps trying to reconnect."""

    async def close(self) -> None: ...

    def specs(self) -> Sequence[ToolSpec]:
        """The tools available now (none while down)."""

    def status(self) -> SourceStatus: ...

    async def call(
        self, name: str, arguments: Mapping[str, object], context: ToolCallContext
    ) -> ToolResult:
        """Call the tool `name` (as in its spec). Its own failures (an exception of the tool,
        an MCP `isError` result, a server that went away) come back as `ToolResult.error`;
        only cancellation propagates."""


class UnknownTool(Exception):
    """The model asked for a tool that no source offers (or the run may not use)."""


class Toolbox:
    """Every source's tools under one name space; the first source to offer a name wins (a
    later duplicate is logged and skipped)."""

    def __init__(self, sources: Iterable[ToolSource], *, timeout_seconds: float) -> None:
        self.sources = list(sources)
        self.timeout_seconds = timeout_seconds

    async def start(self) -> None:
        await asyncio.gather(*(source.start() for source in self.sources))

    async def close(self) -> None:
        await asyncio.gather(*(source.close() for source in self.sources), return_exceptions=True)

    def _index(self) -> dict[str, tuple[ToolSpec, ToolSource]]:
        index: dict[str, tuple[ToolSpec, ToolSource]] = {}
        for source in self.sources:
            for spec in source.specs():
                if spec.name in index:
                    logger.warning(
                        "tool %s of %s is also offered by %s: the first is used",
                        spec.name,
                        spec.source,
                        index[spec.name][0].source,
                    )
                    continue
                index[spec.name] = (spec, source)
        return index

    def specs(
        self, allowed: Sequence[str] | None = None, *, approvals: bool = False
    ) -> list[ToolSpec]:
        """The tools available now, only those named in `allowed` when given; the built-in
        approval tool only (and always) for a run with `approvals`."""
        return [
            spec
            for spec, _ in self._index().values()
            if self.may_call(spec, allowed, approvals=approvals)
        ]

    def may_call(
        self, spec: ToolSpec | str, allowed: Sequence[str] | None, *, approvals: bool
    ) -> bool:
        """Whether a run with these options may call the tool (a spec, or its name)."""
        if isinstance(spec, str):
            found = self._index().get(spec)
            if found is None:
                return allowed is None or spec in allowed
            spec = found[0]
        if spec.source == BUILTIN_APPROVAL_SOURCE:
            return approvals
        return allowed is None or spec.name in allowed

    def statuses(self) -> dict[str, SourceStatus]:
        return {source.name: source.status() for source in self.sources}

    async def call(
        self, name: str, arguments: Mapping[str, object], context: ToolCallContext
    ) -> ToolResult:
        """The tool's result, or an error result for an unknown tool or one that took longer
        than AGENT_TOOL_TIMEOUT_SECONDS."""
        found = self._index().get(name)
        if found is None:
            return ToolResult.error(f"there is no tool {name!r} (it may be unavailable now)")
        _, source = found
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await source.call(name, arguments, context)
        except TimeoutError:
            return ToolResult.error(
                f"the tool {name} did not answer within {self.timeout_seconds:g} s "
                "(AGENT_TOOL_TIMEOUT_SECONDS)"
            )
