"""The workflow endpoints, mounted under /workflows and the seed's /AsyncNotificationsAgent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, status

from app.api.deps import KeyPath, ServiceDep
from app.api.schemas import (
    RUN_EXAMPLES,
    SUBSCRIBE_EXAMPLES,
    ErrorResponse,
    RunAccepted,
    RunBody,
    RunResult,
    SubscribeBody,
    SubscriptionOut,
    WorkflowOut,
)
from app.durable.store import RunInput, WorkflowRow
from app.errors import Conflict, DeliveryFailed, NotFound, WorkflowFailed

router = APIRouter()


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in (400, 413, 422, 503, *codes)}


def _run_input(body: RunBody) -> RunInput:
    return RunInput(query=body.query, model=body.model, instructions=body.instructions)


def _result(workflow: WorkflowRow) -> RunResult:
    if workflow.status == "succeeded":
        return RunResult(key=workflow.key, status="succeeded", output=workflow.output or "")
    if workflow.status == "cancelled":
        raise Conflict(f"workflow {workflow.key!r} was cancelled", code="workflow_cancelled")
    raise WorkflowFailed(f"workflow {workflow.key!r} failed: {workflow.error or 'unknown error'}")


@router.post(
    "/{key}/run",
    summary="Run the agent and wait for its answer",
    description=(
        "Starts the workflow (or attaches to the existing one with the same input) and answers "
        "with the agent's output once it is ready. The agent runs at most once per key."
    ),
    responses=_errors(409, 502),
)
async def run(
    key: KeyPath,
    body: Annotated[RunBody, Body(openapi_examples=RUN_EXAMPLES)],
    service: ServiceDep,
) -> RunResult:
    workflow, _created = await service.start(key, _run_input(body))
    finished = await service.wait_finished(workflow.key)
    assert finished is not None
    return _result(finished)


@router.post(
    "/{key}/run/send",
    summary="Start the agent and return at once",
    description=(
        "Accepts the workflow durably and returns 202 before the agent runs. Sending the same "
        "input again for the key answers `previously_accepted` and runs nothing."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=_errors(409),
)
async def run_send(
    key: KeyPath,
    body: Annotated[RunBody, Body(openapi_examples=RUN_EXAMPLES)],
    service: ServiceDep,
) -> RunAccepted:
    _workflow, created = await service.start(key, _run_input(body))
    return RunAccepted(key=key, status="accepted" if created else "previously_accepted")


@router.post(
    "/{key}/on_notify",
    summary="Subscribe an email and wait until it is sent",
    description=(
        "Registers the address for the agent's answer (before, during or after the run) and "
        "answers once the email has been handed to the mail server, with its Message-ID."
    ),
    responses=_errors(502),
)
async def on_notify(
    key: KeyPath,
    body: Annotated[SubscribeBody, Body(openapi_examples=SUBSCRIBE_EXAMPLES)],
    service: ServiceDep,
) -> SubscriptionOut:
    subscribed = await service.subscribe(key, body.email)
    delivered = await service.wait_delivered(subscribed.subscription)
    if delivered.status != "sent":
        raise DeliveryFailed(
            f"the notification to {delivered.email} was not sent ({delivered.status}): "
            f"{delivered.last_error or 'no reason recorded'}"
        )
    return SubscriptionOut.of(delivered)


@router.post(
    "/{key}/on_notify/send",
    summary="Subscribe an email and return at once",
    description=(
        "Registers the address durably; the email goes out as soon as the agent's answer is "
        "ready, or at once if it already is. Subscribing the same address twice is a no-op."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=_errors(),
)
async def on_notify_send(
    key: KeyPath,
    body: Annotated[SubscribeBody, Body(openapi_examples=SUBSCRIBE_EXAMPLES)],
    service: ServiceDep,
) -> SubscriptionOut:
    subscribed = await service.subscribe(key, body.email)
    return SubscriptionOut.of(subscribed.subscription)


@router.get(
    "/{key}",
    summary="Status of a workflow",
    description=(
        "The workflow's state, input, output or error, timings and attempts, its promise and "
        "every subscription with its delivery state."
    ),
    responses=_errors(404),
)
async def get_workflow(key: KeyPath, service: ServiceDep) -> WorkflowOut:
    current = await service.status(key)
    if current.workflow is None and current.promise is None:
        raise NotFound(f"no workflow {key!r}: start one with POST /workflows/{key}/run/send")
    return WorkflowOut.of(current)
