"""GET /agent: the model, the tools and the sources of tools that runs use, as they are now."""

from __future__ import annotations

from typing import Literal, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, JsonValue

from app.api.deps import process_of
from app.workflows.agent_info import AgentInfo

router = APIRouter(tags=["operations"])


class ToolOut(BaseModel):
    name: str = Field(description="What a run names in `tools`.", examples=["add"])
    description: str
    parameters: dict[str, JsonValue] = Field(description="The arguments' JSON Schema.")
    source: str = Field(description="`python`, or `mcp:<server>`.", examples=["python"])


class SourceOut(BaseModel):
    name: str = Field(description="`python`, or the MCP server's name.", examples=["calc"])
    kind: Literal["python", "mcp", "builtin"] = Field(
        description="`builtin`: the service's own (`request_approval`, for runs with approvers)."
    )
    state: Literal["up", "down", "starting"] = Field(
        description="A source that is down offers no tools (and keeps reconnecting)."
    )
    tools: int = Field(description="How many tools it offers now.")
    error: str | None = Field(default=None, description="Why it is down.")
    detail: dict[str, str] = Field(default_factory=dict, examples=[{"transport": "http"}])


class AgentOut(BaseModel):
    model: str = Field(
        description="The litellm model runs use unless they name another (AGENT_MODEL).",
        examples=["openai/gpt-4o-mini"],
    )
    offline: bool = Field(description="Whether that is the built-in offline model.")
    allowed_models: list[str] = Field(
        description="Other models a run may name (AGENT_ALLOWED_MODELS, `*` wildcards)."
    )
    max_steps: int = Field(description="Model turns a run may take, at most (AGENT_MAX_STEPS).")
    max_tokens_per_run: int | None = Field(
        description="A run's token budget (AGENT_MAX_TOKENS_PER_RUN); null: none."
    )
    tool_timeout_seconds: float
    tool_concurrency: int
    tools: list[ToolOut] = Field(description="Every tool a run may call now.")
    sources: list[SourceOut] = Field(
        description="Each source of tools (the Python tools, each MCP server) and its state."
    )

    @classmethod
    def of(cls, info: AgentInfo) -> AgentOut:
        return cls(
            model=info.model,
            offline=info.offline,
            allowed_models=info.allowed_models,
            max_steps=info.max_steps,
            max_tokens_per_run=info.max_tokens_per_run,
            tool_timeout_seconds=info.tool_timeout_seconds,
            tool_concurrency=info.tool_concurrency,
            tools=[
                ToolOut(
                    name=tool.name,
                    description=tool.description,
                    parameters=tool.parameters,
                    source=tool.source,
                )
                for tool in info.tools
            ],
            sources=[
                SourceOut(
                    name=source.name,
                    kind=cast(Literal["python", "mcp", "builtin"], source.kind),
                    state=source.status.state,
                    tools=source.status.tools,
                    error=source.status.error,
                    detail=source.status.detail,
                )
                for source in info.sources
            ],
        )


@router.get(
    "/agent",
    summary="The agent: its model, its tools and their sources",
    description=(
        "The model runs use, the limits on a run, every tool a run may call now (its name, "
        "description, arguments' JSON Schema and source) and each source of tools with its "
        "state: an MCP server that is down offers no tools until it is back."
    ),
)
async def agent(request: Request) -> AgentOut:
    return AgentOut.of(process_of(request).agent())
