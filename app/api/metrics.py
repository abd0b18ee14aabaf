"""/metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.durable.service import WorkflowService
from app.metrics import Metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text format 0.0.4"}},
)
async def metrics(request: Request) -> Response:
    figures: Metrics = request.app.state.metrics
    service: WorkflowService = request.app.state.service
    counts = await service.store.state_counts()
    for gauge, by_state in (
        (figures.workflows, counts.workflow),
        (figures.subscriptions, counts.subscription),
        (figures.claimable, counts.claimable),
    ):
        gauge.clear()
        for state, count in by_state.items():
            gauge.labels(state).set(count)
    figures.listener_waiters.set(service.listener.waiter_count)
    figures.inflight.labels("run").set(service.runner.inflight)
    figures.inflight.labels("delivery").set(service.delivery.inflight)
    return Response(generate_latest(figures.registry), media_type=CONTENT_TYPE_LATEST)
