"""The workflow endpoints, mounted under /workflows and the seed's /AsyncNotificationsAgent."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, status
from fastapi.responses import JSONResponse

from app.api.answers import (
    OutputPending,
    RunAccepted,
    RunResult,
    WorkflowList,
    WorkflowOut,
    WorkflowSummaryOut,
)
from app.api.deps import KeyPath, workflows_of
from app.api.errors import IDEMPOTENCY_ERRORS, error_responses
from app.api.schemas import RUN_EXAMPLES, RunBody
from app.api.waiting import within_wait
from app.db.rows import Approver, RunInput, WorkflowRow
from app.errors import Conflict, NotFound, WorkflowFailed
from app.states import WorkflowState

# A key's first characters: those of KEY_PATTERN, none to all 256 of them.
KEY_PREFIX_PATTERN = r"^[A-Za-z0-9._~-]*$"

router = APIRouter()
# GET /workflows: only under /workflows (the seed's path style has no listing).
listing = APIRouter()


# The errors a request with a JSON body can get before its endpoint runs.
BODY_ERRORS = (
    "malformed_json",
    "body_too_large",
    "missing_body",
    "invalid_body",
    "invalid_request",
)


def _run_input(body: RunBody) -> RunInput:
    return RunInput(
        query=body.query,
        model=body.model,
        instructions=body.instructions,
        # A set of names: the same tools in another order are the same input.
        tools=None if body.tools is None else tuple(sorted(set(body.tools))),
        max_steps=body.max_steps,
        priority=body.priority,
        output_schema=None if body.output_schema is None else json.dumps(body.output_schema),
        approvers=None
        if body.approvers is None
        else tuple(
            Approver(approver.channel, approver.email or approver.target[0], approver.target[1])
            for approver in body.approvers
        ),
        approval_timeout_seconds=body.approval_timeout_seconds,
    )


def _pending(workflow: WorkflowRow, location: str) -> JSONResponse:
    """202: the run goes on; its output will be at `location`."""
    return JSONResponse(
        OutputPending(key=workflow.key, status=workflow.status).model_dump(),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": location},
    )


def workflow_path(request: Request) -> str:
    """The workflow's own path (`…/{key}`), under the prefix this request came by."""
    return request.url.path.rpartition("/")[0]


# What a sync call answers when MAX_WAIT_SECONDS pass first: the work goes on, and the
# `Location` header says where to look.
LOCATION_HEADER = {"Location": {"description": "Where to look next.", "schema": {"type": "string"}}}
PENDING_RESPONSE = {
    "model": OutputPending,
    "description": (
        "Not finished within the wait (MAX_WAIT_SECONDS): the run goes on. `Location` is "
        "its `…/output`, to wait again."
    ),
    "headers": LOCATION_HEADER,
}


def _result(workflow: WorkflowRow) -> RunResult:
    if workflow.status == WorkflowState.SUCCEEDED:
        output = workflow.output_value
        return RunResult(
            key=workflow.key, status=workflow.status, output="" if output is None else output
        )
    if workflow.status == WorkflowState.CANCELLED:
        raise Conflict(f"workflow {workflow.key!r} was cancelled", code="workflow_cancelled")
    raise WorkflowFailed(f"workflow {workflow.key!r} failed: {workflow.error or 'unknown error'}")


@router.post(
    "/{key}/run",
    summary="Run the agent and wait for its answer",
    response_model=RunResult,
    description=(
        "Starts the workflow (or attaches to the existing one with the same input) and answers "
        "with the agent's output once it is ready. The agent runs at most once per key. "
        "Waits at most MAX_WAIT_SECONDS: then 202 with the state and `Location: …/output`, "
        "and the run goes on. A caller that hangs up stops waiting; the run goes on."
    ),
    responses={
        202: PENDING_RESPONSE,
        **error_responses(
            "invalid_key",
            *BODY_ERRORS,
            "query_too_long",
            "model_not_allowed",
            "max_steps_too_large",
            "invalid_output_schema",
            "key_conflict",
            "workflow_cancelled",
            "workflow_failed",
            "shutting_down",
            *IDEMPOTENCY_ERRORS,
        ),
    },
)
async def run(
    key: KeyPath,
    body: Annotated[RunBody, Body(openapi_examples=RUN_EXAMPLES)],
    request: Request,
) -> Any:
    service = workflows_of(request)
    waiting = service.run(key, _run_input(body))
    finished = await within_wait(request, waiting, timeout=service.settings.max_wait_seconds)
    current = finished or await service.workflow(key)
    if current.finished:
        return _result(current)
    return _pending(current, f"{workflow_path(request)}/output")


@router.post(
    "/{key}/run/send",
    summary="Start the agent and return at once",
    description=(
        "Accepts the workflow durably and returns 202 before the agent runs. Sending the same "
        "input again for the key answers `previously_accepted` and runs nothing."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(
        "invalid_key",
        *BODY_ERRORS,
        "query_too_long",
        "model_not_allowed",
        "max_steps_too_large",
        "invalid_output_schema",
        "key_conflict",
        *IDEMPOTENCY_ERRORS,
    ),
)
async def run_send(
    key: KeyPath,
    body: Annotated[RunBody, Body(openapi_examples=RUN_EXAMPLES)],
    request: Request,
) -> RunAccepted:
    service = workflows_of(request)
    _workflow, created = await service.start(key, _run_input(body))
    return RunAccepted(key=key, status="accepted" if created else "previously_accepted")


@router.get(
    "/{key}",
    summary="Status of a workflow",
    description=(
        "The workflow's state, input, output or error, timings and attempts, its promise and "
        "every subscription with its delivery state."
    ),
    responses=error_responses("invalid_key", "not_found"),
)
async def get_workflow(key: KeyPath, request: Request) -> WorkflowOut:
    service = workflows_of(request)
    current = await service.status(key)
    if current.workflow is None and current.promise is None:
        raise NotFound(f"no workflow {key!r}: start one with POST /workflows/{key}/run/send")
    return WorkflowOut.of(current)


@router.get(
    "/{key}/output",
    summary="Wait for the output (attach)",
    response_model=RunResult,
    description=(
        "Waits until the workflow is done, at most `timeout` seconds (capped by "
        "MAX_WAIT_SECONDS): 200 with the output; the error if it failed (424) or was cancelled "
        "(409); 202 with the current state (and `Location`, this path) if the timeout passed "
        "first. Waiting holds no database connection: the process's one LISTEN connection "
        "wakes it. A caller that hangs up stops waiting."
    ),
    responses={
        202: {
            "model": OutputPending,
            "description": "Not finished within the timeout; ask again at `Location`.",
            "headers": LOCATION_HEADER,
        },
        **error_responses(
            "invalid_key",
            "invalid_request",
            "not_found",
            "workflow_cancelled",
            "workflow_failed",
            "shutting_down",
        ),
    },
)
async def output(
    key: KeyPath,
    request: Request,
    timeout: Annotated[
        float, Query(ge=0, le=86400, description="Seconds to wait; 0 answers at once.")
    ] = 30,
) -> Any:
    service = workflows_of(request)
    current = await service.workflow(key)
    wait = min(timeout, service.settings.max_wait_seconds)
    if not current.finished and wait > 0:
        finished = await within_wait(request, service.wait_finished(key), timeout=wait)
        current = finished or await service.workflow(key)
    if current.finished:
        return _result(current)
    return _pending(current, request.url.path)


@router.post(
    "/{key}/cancel",
    summary="Cancel a workflow",
    description=(
        "A pending, running or waiting workflow stops: an LLM call in flight is abandoned, the "
        "promise "
        "is rejected as `cancelled`, subscribers are told, and waiting `run` callers get a 409 "
        "`workflow_cancelled`. Cancelling a finished workflow is a 409 that says how it ended."
    ),
    responses=error_responses("invalid_key", "not_found", "already_finished", *IDEMPOTENCY_ERRORS),
)
async def cancel(key: KeyPath, request: Request) -> WorkflowOut:
    service = workflows_of(request)
    cancellation = await service.cancel(key)
    if not cancellation.cancelled:
        raise Conflict(
            f"workflow {key!r} already {cancellation.workflow.status}; nothing to cancel",
            code="already_finished",
        )
    return WorkflowOut.of(await service.status(key))


@router.delete(
    "/{key}",
    summary="Delete a finished workflow",
    description=(
        "Removes a finished workflow with its promises and subscriptions, so the key can be used "
        "again (the janitor does the same after RETENTION). 409 while it runs or its emails are "
        "being sent."
    ),
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses("invalid_key", "not_found", "not_finished"),
)
async def delete(key: KeyPath, request: Request) -> None:
    service = workflows_of(request)
    await service.delete(key)


@listing.get(
    "",
    summary="List workflows",
    description=(
        "Newest first. Pass `next_cursor` back as `cursor` for the next page, with the same "
        "`status` and `key_prefix`; pages stay correct while workflows are being added."
    ),
    responses=error_responses("invalid_request", "invalid_key_prefix", "invalid_cursor"),
)
async def list_workflows(
    request: Request,
    status_filter: Annotated[
        WorkflowState | None, Query(alias="status", description="Only workflows in this state.")
    ] = None,
    key_prefix: Annotated[
        str | None,
        Query(
            max_length=256,
            pattern=KEY_PREFIX_PATTERN,
            description=(
                "Only workflows whose key starts with this text (case-sensitive; every "
                "character matches only itself, `_` included). Up to 256 of the characters a "
                "key may hold: letters, digits, '.', '_', '~', '-'; empty means every key."
            ),
            examples=["msg-"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> WorkflowList:
    rows, next_cursor = await workflows_of(request).list(
        status=status_filter, limit=limit, cursor=cursor, key_prefix=key_prefix
    )
    return WorkflowList(items=[WorkflowSummaryOut.of(row) for row in rows], next_cursor=next_cursor)
