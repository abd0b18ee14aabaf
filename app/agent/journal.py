"""What the agent loop needs of a run and of its journal — whoever runs the loop provides them
(app/workflows, over the step table) — and how a run ends other than with an answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.errors import PermanentError
from app.llm.messages import JsonObject
from app.llm.replies import ModelReply
from app.states import StepKind, StepState


@dataclass(frozen=True)
class AgentRun:
    """What a run asks of the agent."""

    key: str
    query: str
    model: str | None = None  # None: AGENT_MODEL
    instructions: str | None = None  # None: AGENT_INSTRUCTIONS
    tools: Sequence[str] | None = None  # the tools it may call; None: every configured one
    max_steps: int | None = None  # its model turns; None: AGENT_MAX_STEPS
    priority: int = 0  # higher first, for model slots as for claims
    output_schema: JsonObject | None = None  # the final answer's JSON Schema; None: text
    approvals: bool = False  # it has approvers: the built-in request_approval tool is its


@dataclass(frozen=True)
class StepRecord:
    """A journaled step, as far as rebuilding the run goes."""

    id: str
    seq: int
    kind: StepKind
    name: str
    # The step's result: the assistant message of a model turn, `{"content", "is_error"}` of a
    # tool call; None while it has none (in flight at a crash, or its model call failed).
    output: JsonObject | None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class StepUsage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None


class Journal(Protocol):
    """The steps of one run, written only while the run is still this attempt's."""

    async def load(self) -> Sequence[StepRecord]:
        """The run's steps so far, by seq."""

    async def begin(self, seq: int, kind: StepKind, name: str, input: object) -> str | None:
        """Journal step `seq` as running; its id (the same as before if the step had begun
        and has no result). None: the run is no longer ours — make no effect. A journal may
        write nothing yet (a run's first model turn: the run's claim marked it started) and
        journal the step with its result in finish()."""

    async def finish(
        self,
        step_id: str,
        *,
        status: StepState,
        output: JsonObject | None,
        error: str | None = None,
        usage: StepUsage | None = None,
    ) -> bool:
        """Record the step's result; False when the run is no longer ours. A journal may
        keep it to write with the next begin() (one commit for both: the loop makes no effect
        between them); whoever drives the loop then has it written when the loop ends any
        other way (RunJournal.flush())."""


class ModelGate(Protocol):
    """Around each model call of a run: flow control (slots, pauses) across the replicas."""

    async def call(self, model: str, send: Callable[[], Awaitable[ModelReply]]) -> ModelReply:
        """`send()`'s reply, sent when the model may be called (perhaps again, after a pause
        its provider asked for); its errors as they are."""


@dataclass(frozen=True)
class AnswerStep:
    """The model turn that answered, begun and not finished: whoever records the run's outcome
    journals it in the same transaction (no statement of its own)."""

    step_id: str
    seq: int
    output: JsonObject
    usage: StepUsage


@dataclass(frozen=True)
class Outcome:
    answer: str
    turns: int  # model turns, replayed ones included
    # The answering turn, to journal with the outcome; None when it was replayed (journaled).
    answer_step: AnswerStep | None = None


class RunTakenAway(Exception):
    """The run's lease passed to another process (or attempt), or the run was cancelled or
    deleted, while this loop ran it: stop, and make no further effect."""


class RunSuspended(Exception):
    """A tool call waits for something outside the run (a person's decision): the run is to be
    handed back, waiting, and rebuilt from its journal once it may go on. The call's step has
    no result yet; it is made again then, under its id."""

    def __init__(self, promises: Sequence[str], wake_at: datetime) -> None:
        super().__init__(", ".join(promises))
        self.promises = list(promises)  # the decisions it waits for
        self.wake_at = wake_at  # when it goes on regardless (the earliest deadline)

    @classmethod
    def merged(cls, suspensions: Sequence[RunSuspended]) -> RunSuspended:
        """One suspension for all of a turn's calls that wait."""
        promises = [name for suspension in suspensions for name in suspension.promises]
        return cls(promises, min(suspension.wake_at for suspension in suspensions))


class RunLimitExceeded(PermanentError):
    """The run used up a limit (`code`: max_steps_exceeded, budget_exceeded); it fails."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
