"""A run's steps: every model turn and tool call of its agent loop, as journaled."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import KeyPath, workflows_of
from app.api.errors import error_responses
from app.api.step_schemas import StepList, StepOut
from app.workflows.service import STEP_TEXT_CHARS

router = APIRouter()


@router.get(
    "/{key}/steps",
    summary="The steps of a workflow's run",
    description=(
        "Each model turn (`llm`) and tool call (`tool`) of the run's agent loop, in order, as "
        "journaled: arguments and results (cut to a few KB, with their full length), tokens, "
        "attempts and timings. Pass `next_cursor` back as `cursor` for the next page."
    ),
    responses=error_responses("invalid_key", "invalid_request", "invalid_cursor", "not_found"),
)
async def list_steps(
    key: KeyPath,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> StepList:
    rows, next_cursor = await workflows_of(request).steps(key, limit=limit, cursor=cursor)
    return StepList(
        items=[StepOut.of(row, STEP_TEXT_CHARS) for row in rows], next_cursor=next_cursor
    )
