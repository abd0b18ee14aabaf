"""The built-in tool of a run with approvers: `request_approval` asks a person and waits.

The source only speaks for the model: whoever runs the loop (app/workflows) provides the
`Approvals` that record the request durably, tell the approvers and read the decision. A call
whose decision is not made yet raises RunSuspended: the run is handed back, waiting, and the
call is made again (same step id) when it goes on, to find the decision or its timeout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.agent.journal import RunSuspended
from app.agent.tools import (
    BUILTIN_APPROVAL_SOURCE,
    SourceStatus,
    ToolCallContext,
    ToolResult,
    ToolSpec,
)
from app.llm.messages import JsonObject
from app.states import APPROVAL_TOOL

APPROVAL_SOURCE = BUILTIN_APPROVAL_SOURCE
QUESTION_CHARS = 2000
DETAILS_CHARS = 8000

SPEC = ToolSpec(
    name=APPROVAL_TOOL,
    description=(
        "Ask a person to approve or reject something before you go on, and wait for the "
        "decision (it may take hours). The result is a JSON object: `approved` (true or "
        "false), the approver's `comment`, and `by`; `timed_out` is true when nobody decided "
        "in time (then `approved` is false). Ask one clear yes/no question."
    ),
    parameters={
        "type": "object",
        "properties": {
            "question": {
                "type": "string",
                "description": "The yes/no question the approver answers.",
                "maxLength": QUESTION_CHARS,
            },
            "details": {
                "type": "string",
                "description": "What the approver should know to decide (optional).",
                "maxLength": DETAILS_CHARS,
            },
        },
        "required": ["question"],
        "additionalProperties": False,
    },
    source=APPROVAL_SOURCE,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of a request: made (`value`, the tool's result), or awaited until a deadline."""

    value: JsonObject | None
    promise: str
    deadline: datetime


class Approvals(Protocol):
    async def request(
        self, context: ToolCallContext, question: str, details: str | None
    ) -> Decision:
        """Record the request of the call (once: it is made again under the same step id) and
        tell the approvers; the decision if it is made (or timed out)."""


class ApprovalSource:
    """The `request_approval` tool, offered only to runs with approvers (Toolbox.specs)."""

    name = APPROVAL_SOURCE
    kind = "builtin"

    def __init__(self, approvals: Approvals) -> None:
        self._approvals = approvals

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def specs(self) -> Sequence[ToolSpec]:
        return [SPEC]

    def status(self) -> SourceStatus:
        return SourceStatus(state="up", tools=1)

    async def call(
        self, name: str, arguments: Mapping[str, object], context: ToolCallContext
    ) -> ToolResult:
        question = arguments.get("question")
        details = arguments.get("details")
        if not isinstance(question, str) or not question.strip():
            return ToolResult.error("`question` is required: the yes/no question to ask")
        if details is not None and not isinstance(details, str):
            return ToolResult.error("`details` must be a string")
        decision = await self._approvals.request(
            context, question[:QUESTION_CHARS], None if details is None else details[:DETAILS_CHARS]
        )
        if decision.value is None:
            raise RunSuspended([decision.promise], decision.deadline)
        return ToolResult(json.dumps(decision.value, ensure_ascii=False))
