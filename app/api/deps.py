"""Dependencies the routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request

from app.api.schemas import KEY_DESCRIPTION
from app.config import KEY_PATTERN
from app.workflows.process import ServiceProcess
from app.workflows.service import WorkflowService


def service_of(request: Request) -> WorkflowService:
    """The app's WorkflowService. Read directly, not through Depends: solving a dependency
    costs FastAPI more per request than everything else in a route but the database."""
    service: WorkflowService = request.app.state.service
    return service


def process_of(request: Request) -> ServiceProcess:
    """The app's running process: its readiness and metrics."""
    process: ServiceProcess = request.app.state.process
    return process


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
