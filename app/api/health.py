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
    summary="Readiness: database reachable and migrated, listener connected, workers running; "
    "the state of each source of tools",
    responses={503: {"description": "Not ready; the body says which check failed."}},
    openapi_extra={"security": []},
)
async def readyz(request: Request) -> JSONResponse:
    readiness = await process_of(request).readiness()
    checks = asdict(readiness)
    tools = checks.pop("tools")
    return JSONResponse(
        {
            "status": "ready" if readiness.ready else "not_ready",
            "checks": checks,
            # Each source of tools ("python", each MCP server) and its state, for operators:
            # a server that is down does not make the service unready.
            "tools": tools,
        },
        status_code=200 if readiness.ready else 503,
    )
