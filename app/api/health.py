"""Liveness and readiness probes."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.deps import process_of

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
    readiness = await process_of(request).readiness()
    return JSONResponse(
        {"status": "ready" if readiness.ready else "not_ready", "checks": asdict(readiness)},
        status_code=200 if readiness.ready else 503,
    )
