"""Promises of a workflow: peek, and complete from outside (a person in the loop, a system)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from app.api.answers import PromiseOut
from app.api.deps import KeyPath, workflows_of
from app.api.errors import IDEMPOTENCY_ERRORS, error_responses
from app.api.schemas import RejectRequest, ResolveRequest
from app.config import KEY_PATTERN

router = APIRouter()

NamePath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=256,
        pattern=KEY_PATTERN,
        description="The promise's name; `agent_response` is the agent's answer.",
        examples=["approval"],
    ),
]
COMPLETION = (
    "First writer wins: completing it again with the same outcome is a no-op (200), with "
    "another one a 409. A promise the workflow does not have yet is created completed; a "
    "workflow that does not exist is a 404. Its subscribers are notified as for the agent's "
    "answer."
)


COMPLETION_ERRORS = (
    "invalid_key",
    "malformed_json",
    "body_too_large",
    "missing_body",
    "invalid_body",
    "invalid_request",
    "not_found",
    "promise_already_completed",
    "agent_promise",
    *IDEMPOTENCY_ERRORS,
)


@router.get(
    "/{key}/promises/{name}",
    summary="Peek at a promise",
    description="Its state (`pending`, `resolved`, `rejected`) and its value or error.",
    responses=error_responses("invalid_key", "invalid_request", "not_found"),
)
async def get_promise(key: KeyPath, name: NamePath, request: Request) -> PromiseOut:
    service = workflows_of(request)
    return PromiseOut.of(await service.promise(key, name))


@router.post(
    "/{key}/promises/{name}/resolve",
    summary="Resolve a promise",
    description=COMPLETION,
    responses=error_responses(*COMPLETION_ERRORS),
)
async def resolve_promise(
    key: KeyPath, name: NamePath, body: ResolveRequest, request: Request
) -> PromiseOut:
    service = workflows_of(request)
    completion = await service.complete_promise(key, name, value=body.value)
    return PromiseOut.of(completion.promise)


@router.post(
    "/{key}/promises/{name}/reject",
    summary="Reject a promise",
    description=COMPLETION,
    responses=error_responses(*COMPLETION_ERRORS),
)
async def reject_promise(
    key: KeyPath, name: NamePath, body: RejectRequest, request: Request
) -> PromiseOut:
    service = workflows_of(request)
    completion = await service.complete_promise(key, name, error=body.error)
    return PromiseOut.of(completion.promise)
