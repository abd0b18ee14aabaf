"""GET /workflows/{key}/events: the workflow's state changes as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.api.answers import ErrorResponse, WorkflowOut
from app.api.deps import KeyPath, workflows_of
from app.api.step_events import StepEvents
from app.errors import NotFound, Unavailable
from app.states import (
    AGENT_PROMISE,
    FINISHED_WORKFLOW_STATES,
    SubscriptionState,
)
from app.workflows.owners import OwnedWorkflows

router = APIRouter()


@router.get(
    "/{key}/events",
    summary="Follow a workflow (Server-Sent Events)",
    description=(
        "Streams the workflow's state changes until it is finished and the emails of its "
        "answer are out. "
        "Each event is named after the state it announces (`pending`, `running`, `waiting`, "
        "`succeeded`, `failed`, `cancelled`) with the workflow's JSON, `step` with a step's "
        "JSON (as `/steps` lists it) when a model turn or tool call of the run begins and when "
        "it finishes (each step's before the final state), or `subscription` with one "
        "subscription's JSON when its delivery changes. A finished workflow's stream sends "
        "its steps and final state at once and ends."
    ),
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream."},
        404: {"model": ErrorResponse},
    },
)
async def events(key: KeyPath, request: Request) -> EventSourceResponse:
    service = workflows_of(request)
    current = await service.status(key)
    if current.workflow is None and current.promise is None:
        raise NotFound(f"no workflow {key!r}")
    return EventSourceResponse(_stream(service, key), ping=15)


async def _stream(service: OwnedWorkflows, key: str) -> AsyncIterator[ServerSentEvent]:
    announced_state: str | None = None
    announced_deliveries: dict[Any, str] = {}
    steps = StepEvents(service, key)
    try:
        async for _ in service.changes(key, steps=True):
            current = await service.status(key)
            if current.workflow is None and current.promise is None:
                return  # deleted meanwhile: nothing more will happen under this key
            out = WorkflowOut.of(current)
            # Read after the state: every step the state's commit made is in it.
            changed = [] if current.workflow is None else await steps.since(current.workflow)
            if current.workflow is not None and current.workflow.finished:
                for event in changed:  # the steps first, then the final state
                    yield event
                changed = []
            if out.status is not None and out.status != announced_state:
                announced_state = out.status
                yield ServerSentEvent(event=out.status, data=out.model_dump_json())
            for event in changed:
                yield event
            for subscription in out.subscriptions:
                if announced_deliveries.get(subscription.id) != subscription.status:
                    announced_deliveries[subscription.id] = subscription.status
                    yield ServerSentEvent(event="subscription", data=subscription.model_dump_json())
            if _finished(out):
                return
    except Unavailable:
        return  # the process is shutting down; the client reconnects to another


def _finished(out: WorkflowOut) -> bool:
    """The workflow is over and the emails of its answer are out. (Subscribers of other
    promises may wait much longer; they do not hold the stream open.)"""
    in_flight = {SubscriptionState.WAITING, SubscriptionState.READY}
    return out.status in FINISHED_WORKFLOW_STATES and not any(
        s.status in in_flight and s.promise == AGENT_PROMISE for s in out.subscriptions
    )
