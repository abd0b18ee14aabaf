"""Dependencies the routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.api.schemas import KEY_DESCRIPTION
from app.config import KEY_PATTERN
from app.durable.service import WorkflowService


async def get_service(request: Request) -> WorkflowService:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request.
    service: WorkflowService = request.app.state.service
    return service


ServiceDep = Annotated[WorkflowService, Depends(get_service)]
KeyPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=256,
        pattern=KEY_PATTERN,
        description=KEY_DESCRIPTION,
        examples=["msg-123"],
    ),
]
