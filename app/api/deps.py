"""Dependencies the routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request

from app.api.schemas import KEY_DESCRIPTION
from app.api.security import caller_of
from app.config import KEY_PATTERN
from app.workflows.owners import OwnedWorkflows
from app.workflows.process import ServiceProcess
from app.workflows.service import WorkflowService


def workflows_of(request: Request) -> OwnedWorkflows:
    """The workflows as the request's caller may see them: every workflow route goes through
    this (tests/integration/test_owners.py walks them all with another user's token). Read
    directly, not through Depends: solving a dependency costs FastAPI more per request than
    everything else in a route but the database."""
    process: ServiceProcess = request.app.state.process
    return OwnedWorkflows(process.service, process.store, caller_of(request.scope))


def service_of(request: Request) -> WorkflowService:
    """The app's WorkflowService, for what no caller owns (signed links, Idempotency-Key)."""
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
