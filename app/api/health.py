"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers", openapi_extra={"security": []})
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable and migrated, listener connected, workers running",
    responses={503: {"description": "Not ready; the body says which check failed."}},
    openapi_extra={"security": []},
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, bool] = {}
    try:
        async with state.engine.connect() as connection:
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        checks["database"] = True
        # At this code's head, or ahead of it (a newer replica migrated during a rolling
        # deploy): only a schema this code has not reached yet is not ready.
        checks["migrations"] = revision not in state.schema_behind
    except Exception:
        checks["database"] = False
        checks["migrations"] = False
    checks["listener"] = state.service.listener.connected
    checks["workers"] = state.supervisor.healthy
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
