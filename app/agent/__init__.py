"""The agent: the tools a run may call (Python functions, MCP servers) and the loop of model
turns and tool calls over a journal.

May import only `app.llm`, the leaves (`app.config`, `app.errors`, `app.states`, …) and
third-party libraries (mcp, pydantic) — never app.db, app.engine, app.workflows or app.api:
whoever runs the loop hands it the journal.
"""

from app.agent.approval import Approvals, ApprovalSource, Decision
from app.agent.journal import (
    AgentRun,
    AnswerStep,
    Journal,
    ModelGate,
    Outcome,
    RunLimitExceeded,
    RunSuspended,
    RunTakenAway,
    StepRecord,
    StepUsage,
)
from app.agent.loop import AgentLoop
from app.agent.python_tools import PythonTools
from app.agent.tools import (
    SourceStatus,
    Toolbox,
    ToolCallContext,
    ToolResult,
    ToolSource,
    ToolSpec,
    UnknownTool,
)

__all__ = [
    "AgentLoop",
    "AgentRun",
    "AnswerStep",
    "ApprovalSource",
    "Approvals",
    "Decision",
    "Journal",
    "ModelGate",
    "Outcome",
    "PythonTools",
    "RunLimitExceeded",
    "RunSuspended",
    "RunTakenAway",
    "SourceStatus",
    "StepRecord",
    "StepUsage",
    "ToolCallContext",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "Toolbox",
    "UnknownTool",
]
