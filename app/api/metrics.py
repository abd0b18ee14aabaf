"""/metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import process_of
from app.api.errors import error_responses
from app.api.security import require_admin

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    description=(
        "Counters of this process and the workflows and subscriptions by state, across every "
        "API token's: an admin token's (or anyone's with METRICS_PUBLIC)."
    ),
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text format 0.0.4"},
        **error_responses("admin_only"),
    },
)
async def metrics(request: Request) -> Response:
    require_admin(request)
    return Response(await process_of(request).metrics_text(), media_type=CONTENT_TYPE_LATEST)
