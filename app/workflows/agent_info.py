"""What `GET /agent` shows: the model runs use, the limits that bind them, every tool a run may
call (with its arguments' schema and where it comes from) and the state of each source of tools."""

from __future__ import annotations

from dataclasses import dataclass

from app.agent import SourceStatus, Toolbox
from app.config import Settings
from app.llm.messages import JsonObject


@dataclass(frozen=True, slots=True)
class ToolInfo:
    name: str
    description: str
    parameters: JsonObject
    source: str  # "python" or "mcp:<server>"


@dataclass(frozen=True, slots=True)
class SourceInfo:
    name: str
    kind: str  # "python", "mcp" or "builtin"
    status: SourceStatus


@dataclass(frozen=True, slots=True)
class AgentInfo:
    model: str
    offline: bool
    allowed_models: list[str]
    max_steps: int
    max_tokens_per_run: int | None
    tool_timeout_seconds: float
    tool_concurrency: int
    tools: list[ToolInfo]
    sources: list[SourceInfo]


def describe_agent(settings: Settings, toolbox: Toolbox) -> AgentInfo:
    """The agent as it is now: a source that is down offers no tools until it is back."""
    return AgentInfo(
        model=settings.model,
        offline=settings.offline,
        allowed_models=[p.strip() for p in settings.agent_allowed_models.split(",") if p.strip()],
        max_steps=settings.agent_max_steps,
        max_tokens_per_run=settings.agent_max_tokens_per_run,
        tool_timeout_seconds=settings.agent_tool_timeout_seconds,
        tool_concurrency=settings.agent_tool_concurrency,
        tools=[
            ToolInfo(spec.name, spec.description, spec.parameters, spec.source)
            for spec in toolbox.specs()
        ],
        sources=[
            SourceInfo(source.name, source.kind, source.status()) for source in toolbox.sources
        ],
    )
