"""The live dashboard: one HTML page and its static assets, all served by the service itself.

The page holds no data: its JavaScript calls the public API (with the API token the user typed,
when the operator set API_TOKENS), so `/ui` is readable without a token (security.PUBLIC_PREFIXES).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from app.config import KEY_PATTERN

ASSETS = Path(__file__).resolve().parent.parent / "ui"

# Everything the page loads comes from this service: no CDN, no inline script or style, so a
# value that slipped past escaping still could not run. The API is same-origin (connect-src).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is tiny and changes with the service: always revalidate (ETag makes it cheap).
    "Cache-Control": "no-cache",
}


class Assets(StaticFiles):
    """Starlette's static files, revalidated on every load so an upgrade never runs old code
    against a new API (the ETag keeps revalidation to a 304)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


router = APIRouter(include_in_schema=False)
router.mount("/ui/static", Assets(directory=ASSETS / "static"), name="ui-static")


def _page() -> FileResponse:
    return FileResponse(ASSETS / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/ui")
async def workflows_page() -> FileResponse:
    """The list of workflows; the script renders it."""
    return _page()


@router.get("/ui/workflows/{key}")
async def workflow_page(
    key: Annotated[str, PathParam(min_length=1, max_length=256, pattern=KEY_PATTERN)],
) -> FileResponse:
    """One workflow's page: the same document, the script reads the key from the address."""
    return _page()
