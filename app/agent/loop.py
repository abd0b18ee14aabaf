"""The agent loop: model turns and tool calls, each a journaled step, until an answer.

A run is rebuilt from its journal first — the system and user messages, then each finished
model turn's assistant message and each finished tool call's result, in seq order — and goes on
with the first step that has no result: a finished model turn is never sent again, a finished
tool call never called again. A step in flight at a crash runs again under its id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from opentelemetry.trace import SpanKind

from app import tracing
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
from app.agent.output import OutputInvalid, check_answer, prepared, repair_message
from app.agent.tools import Toolbox, ToolCallContext, ToolResult
from app.config import Settings
from app.errors import PermanentError, TransientError, describe
from app.llm import ModelClient, ModelReply, classify, reply_of
from app.llm.messages import (
    AssistantMessage,
    JsonObject,
    Message,
    ResponseFormat,
    ToolCall,
    ToolMessage,
)
from app.states import StepKind, StepState

logger = logging.getLogger(__name__)


class AgentLoop:
    def __init__(self, client: ModelClient, toolbox: Toolbox, settings: Settings) -> None:
        self.client = client
        self.toolbox = toolbox
        self.settings = settings

    async def run(self, run: AgentRun, journal: Journal, gate: ModelGate | None = None) -> Outcome:
        """The run's answer (each model call through the `gate` if one is given), its
        answering turn begun but left for the caller to journal with the run's outcome
        (`Outcome.answer_step`). Raises RunTakenAway when the journal says the run is no longer
        ours, RunLimitExceeded (a PermanentError) past max_steps or the token budget, and
        TransientError or PermanentError for a failed model call; anything else is a bug."""
        journaled = {step.seq: step for step in await journal.load()}
        used = sum((s.input_tokens or 0) + (s.output_tokens or 0) for s in journaled.values())
        system, response_format = prepared(
            run.output_schema,
            run.model or self.settings.model,
            run.instructions or self.settings.agent_instructions,
        )
        messages: list[Message] = [
            {"role": "system", "content": system},
            {"role": "user", "content": run.query},
        ]
        added: list[Message] = list(messages)  # since the previous model turn
        max_turns = run.max_steps or self.settings.agent_max_steps
        seq = turns = 0
        repaired = False  # the one repair turn of an answer that missed output_schema
        while True:
            done = _result(journaled.get(seq), StepKind.LLM)
            answer_step: AnswerStep | None = None
            if done is not None:
                assistant = cast(AssistantMessage, done)
            else:
                self._check_budget(used)
                if turns >= max_turns:
                    raise _max_steps(max_turns)
                reply, step_id = await self._model_turn(
                    run, journal, seq, messages, added, gate, response_format=response_format
                )
                used += reply.tokens
                assistant = reply.message
                output = cast(JsonObject, dict(assistant))
                usage = StepUsage(reply.input_tokens, reply.output_tokens, reply.cost_usd)
                if assistant.get("tool_calls"):
                    await _finish(
                        journal, step_id, status=StepState.SUCCEEDED, output=output, usage=usage
                    )
                else:
                    # The answer: journaled with the run's outcome, in its transaction.
                    answer_step = AnswerStep(step_id, seq, output, usage)
            turns += 1
            seq += 1
            messages.append(assistant)
            calls = assistant.get("tool_calls") or []
            if not calls:
                answer = assistant.get("content") or ""
                if run.output_schema is None:
                    return Outcome(answer=answer, turns=turns, answer_step=answer_step)
                checked = check_answer(answer, run.output_schema)
                if checked.problem is None:
                    return Outcome(answer=checked.text, turns=turns, answer_step=answer_step)
                if answer_step is not None:
                    # Not the answer after all: journaled now, so that a crash replays it (and
                    # its check) rather than asking again.
                    await _finish(
                        journal,
                        answer_step.step_id,
                        status=StepState.SUCCEEDED,
                        output=answer_step.output,
                        usage=answer_step.usage,
                    )
                if repaired or turns >= max_turns:
                    raise OutputInvalid(checked.problem, repaired=repaired)
                # Replayed alike after a crash: the check of a journaled answer is the same.
                repaired = True
                added = [repair_message(checked.problem)]
                messages.extend(added)
                continue
            if turns >= max_turns:
                # Their results could never reach a model: the calls are not made.
                raise _max_steps(max_turns)
            added = list(await self._tool_calls(run, journal, seq, calls, journaled))
            messages.extend(added)
            seq += len(calls)

    def _check_budget(self, used: int) -> None:
        budget = self.settings.agent_max_tokens_per_run
        if budget is not None and used >= budget:
            raise RunLimitExceeded(
                "budget_exceeded",
                f"the run used {used} tokens, its budget is {budget} "
                "(AGENT_MAX_TOKENS_PER_RUN); it gets no further model turn",
            )

    async def _model_turn(
        self,
        run: AgentRun,
        journal: Journal,
        seq: int,
        messages: Sequence[Message],
        added: Sequence[Message],
        gate: ModelGate | None,
        *,
        response_format: ResponseFormat | None = None,
    ) -> tuple[ModelReply, str]:
        """The turn's reply and its step's id; the step is left for the caller to finish (a
        failed call is journaled here)."""
        model = run.model or self.settings.model
        step_id = await _begin(journal, seq, StepKind.LLM, model, list(added))
        specs = self.toolbox.specs(run.tools, approvals=run.approvals)
        tools = [spec.for_model() for spec in specs]
        responses: list[Any] = []  # the provider's response, for the span

        async def send() -> ModelReply:
            response = await self.client.complete(
                messages, model=run.model, tools=tools or None, response_format=response_format
            )
            responses.append(response)
            return reply_of(response)

        with tracing.span(f"chat {model}", kind=SpanKind.CLIENT, attributes=_turn(model, step_id)):
            try:
                reply = await (send() if gate is None else gate.call(model, send))
            except Exception as exc:
                error = exc if isinstance(exc, TransientError | PermanentError) else classify(exc)
                text = str(error) if error is not None else f"internal error: {describe(exc)}"
                # The failed call is journaled; the step runs again when the run is retried.
                await _finish(journal, step_id, status=StepState.FAILED, output=None, error=text)
                if error is None or error is exc:
                    raise
                raise error from exc
            response = responses[-1]
            tracing.annotate(
                {
                    "gen_ai.response.model": getattr(response, "model", None),
                    "gen_ai.usage.input_tokens": reply.input_tokens,
                    "gen_ai.usage.output_tokens": reply.output_tokens,
                    "gen_ai.response.finish_reasons": _finish_reasons(response),
                }
            )
        return reply, step_id

    async def _tool_calls(
        self,
        run: AgentRun,
        journal: Journal,
        first_seq: int,
        calls: Sequence[ToolCall],
        journaled: Mapping[int, StepRecord],
    ) -> list[ToolMessage]:
        """The tool messages of the turn's calls, in the model's order: each call a step at
        its seq, replayed if journaled, else made (AGENT_TOOL_CONCURRENCY at once)."""
        limit = asyncio.Semaphore(self.settings.agent_tool_concurrency)
        # Calls that wait (request_approval): the turn's other calls finish first.
        suspended: list[RunSuspended] = []

        async def one(seq: int, call: ToolCall) -> ToolMessage:
            output = _result(journaled.get(seq), StepKind.TOOL)
            if output is None:
                async with limit:
                    try:
                        output = await self._tool_call(run, journal, seq, call)
                    except RunSuspended as suspension:
                        suspended.append(suspension)
                        output = {}
            content = output.get("content")
            return {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": content if isinstance(content, str) else json.dumps(content),
            }

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(one(first_seq + index, call))
                    for index, call in enumerate(calls)
                ]
        except BaseExceptionGroup as failed:
            # One call's run taken away (or a bug) stops the others: report it as it is.
            errors: list[BaseException] = list(failed.exceptions)
            taken = [error for error in errors if isinstance(error, RunTakenAway)]
            raise (taken or errors)[0] from None
        if suspended:
            raise RunSuspended.merged(suspended)
        return [task.result() for task in tasks]

    async def _tool_call(
        self, run: AgentRun, journal: Journal, seq: int, call: ToolCall
    ) -> JsonObject:
        name = call["function"]["name"]
        raw = call["function"]["arguments"]
        arguments, problem = parse_arguments(raw)
        step_id = await _begin(journal, seq, StepKind.TOOL, name, raw if problem else arguments)
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call["id"],
            "gen_ai.tool.type": "function",
            "agent_notify.step.id": step_id,
        }
        with tracing.span(f"execute_tool {name}", attributes=attributes, quiet=(RunSuspended,)):
            if problem is not None:
                result = ToolResult.error(problem)
            elif not self.toolbox.may_call(name, run.tools, approvals=run.approvals):
                result = ToolResult.error(f"the tool {name!r} is not one this run may use")
            else:
                try:
                    context = ToolCallContext(step_id, run.key)
                    result = await self.toolbox.call(name, arguments, context)
                except RunSuspended:
                    raise  # the step stays without a result: made again when the run goes on
                except Exception as exc:  # a source that broke its contract: still a result
                    logger.exception("tool %s raised instead of returning an error result", name)
                    result = ToolResult.error(describe(exc))
            if result.is_error:
                tracing.annotate({"error.type": "tool_error"})
                tracing.failed(result.content[:500])
        output: JsonObject = {"content": result.content, "is_error": result.is_error}
        await _finish(
            journal,
            step_id,
            status=StepState.FAILED if result.is_error else StepState.SUCCEEDED,
            output=output,
            error=result.content if result.is_error else None,
        )
        return output


def _turn(model: str, step_id: str) -> dict[str, str | None]:
    """A model turn's span attributes (GenAI semantic conventions), before the call."""
    provider = model.split("/", 1)[0] if "/" in model else None  # litellm's route prefix
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.provider.name": provider,
        "agent_notify.step.id": step_id,
    }


def _finish_reasons(response: object) -> list[str] | None:
    choices = getattr(response, "choices", None) or []
    reasons = [str(c.finish_reason) for c in choices if getattr(c, "finish_reason", None)]
    return reasons or None


def parse_arguments(raw: str) -> tuple[JsonObject, str | None]:
    """A tool call's arguments as the model wrote them: the object, or why they are unusable
    (handed to the model as the call's result). No text at all is no arguments."""
    if not raw.strip():
        return {}, None
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        return {}, f"the arguments are not valid JSON ({exc}); send a JSON object"
    if not isinstance(parsed, dict):
        return {}, "the arguments must be a JSON object"
    return parsed, None


def _result(step: StepRecord | None, kind: StepKind) -> JsonObject | None:
    """The journaled result of the step expected at its seq, if it has one."""
    if step is None or step.output is None:
        return None
    if step.kind != kind:
        raise PermanentError(
            f"the journal has a {step.kind} step at seq {step.seq} where the loop expects a "
            f"{kind} step: it was written by an incompatible version"
        )
    return step.output


async def _begin(journal: Journal, seq: int, kind: StepKind, name: str, input: object) -> str:
    step_id = await journal.begin(seq, kind, name, input)
    if step_id is None:
        raise RunTakenAway(f"step {seq}")
    return step_id


async def _finish(
    journal: Journal,
    step_id: str,
    *,
    status: StepState,
    output: JsonObject | None,
    error: str | None = None,
    usage: StepUsage | None = None,
) -> None:
    if not await journal.finish(step_id, status=status, output=output, error=error, usage=usage):
        raise RunTakenAway(f"step {step_id}")


def _max_steps(max_turns: int) -> RunLimitExceeded:
    return RunLimitExceeded(
        "max_steps_exceeded",
        f"the agent took {max_turns} model turns (max_steps) without a final answer; raise "
        "the run's max_steps (up to AGENT_MAX_STEPS) or simplify the task",
    )
