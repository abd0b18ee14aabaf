"""POST /workflows/{key}/resume: a failed run continues from its journal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request, status
from pydantic import BaseModel, ConfigDict, Field

from app.api.answers import WorkflowOut
from app.api.deps import KeyPath, workflows_of
from app.api.errors import IDEMPOTENCY_ERRORS, error_responses

router = APIRouter()


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="The run's model turns from now on, at most AGENT_MAX_STEPS; default the "
        "run's own. It becomes part of the run's input (attach with it).",
    )


@router.post(
    "/{key}/resume",
    summary="Resume a failed run from its journal",
    description=(
        "A failed run continues where it stopped: finished model turns and tool calls are kept "
        "(not made again), the step that failed runs again, and the limits are read anew "
        "(AGENT_MAX_STEPS, AGENT_MAX_TOKENS_PER_RUN, or the `max_steps` given here). Its "
        "promise is pending again, and every subscriber told of the failure is notified of the "
        "new outcome (under a new Message-ID / webhook-id). 409 `not_failed` for a run that "
        "has not failed."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(
        "invalid_key",
        "malformed_json",
        "body_too_large",
        "invalid_body",
        "invalid_request",
        "max_steps_too_large",
        "not_found",
        "not_failed",
        *IDEMPOTENCY_ERRORS,
    ),
)
async def resume(
    key: KeyPath,
    request: Request,
    body: Annotated[ResumeRequest | None, Body()] = None,
) -> WorkflowOut:
    service = workflows_of(request)
    max_steps = body.max_steps if body is not None else None
    await service.resume(key, max_steps=max_steps)
    return WorkflowOut.of(await service.status(key))
