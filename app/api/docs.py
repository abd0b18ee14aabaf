"""The API's documentation: the OpenAPI schema (with the optional bearer scheme), the /docs page
on the service's own copy of Swagger UI (no CDN: it works without internet), and / leading to
the dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI = Path(__file__).resolve().parent.parent / "vendor" / "swagger-ui"

DESCRIPTION = """
Run long AI-agent tasks durably and get an email the moment the answer is ready.

```sh
curl localhost:8080/workflows/msg-123/run/send \\
  --json '"Write a 1000-word description of Durable Execution"'
curl localhost:8080/workflows/msg-123/on_notify/send --json '"me@example.com"'
curl localhost:8080/workflows/msg-123
```

1. `POST /workflows/{key}/run/send` with the query starts the agent in the background.
2. `POST /workflows/{key}/on_notify/send` with an email address subscribes it: the email goes out
   when the answer is ready, or at once if it already is.
3. `GET /workflows/{key}` shows the run, its promise and every subscriber's delivery;
   `GET /workflows/{key}/output` waits for the answer, `/events` streams every change.

Everything is a row in Postgres: a crash or restart anywhere loses nothing. The same endpoints
answer under `/AsyncNotificationsAgent/{key}/…`, the path style of the Restate example, so its
published curl commands work verbatim. Errors are `{"error": {"code", "message"}}`. When the
operator sets API tokens, send `Authorization: Bearer <token>` (the Authorize button).

The [live dashboard](/ui) shows every workflow, its promise and its subscribers as they change,
and acts on them through these same endpoints.
"""


def install_docs(app: FastAPI) -> None:
    def openapi_with_bearer() -> dict[str, Any]:
        """The generated schema, plus the bearer-token scheme the TokenAuth middleware checks
        (optional: the service runs without tokens unless API_TOKENS is set)."""
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Needed when the operator sets API_TOKENS.",
                }
            }
            # Probes opt out per operation (security: []).
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi_with_bearer  # type: ignore[method-assign]

    # Swagger UI from this service, not a CDN: the docs page works without internet.
    app.mount("/static/swagger-ui", StaticFiles(directory=SWAGGER_UI), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/ui/static/favicon.svg",
        )

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        # The dashboard, which links to /docs.
        return RedirectResponse("/ui")
