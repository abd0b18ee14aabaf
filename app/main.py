"""The application factory: the lifespan builds the database, listener and workers, in order.

`app` is importable as `app.main:app` for `uvicorn app.main:app`; `agent-notify serve` builds
the same app with the same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from app import __version__, migrate
from app.agent import Agent
from app.api import events, health, promises, routes, ui
from app.api import metrics as metrics_api
from app.api.errors import install_error_handlers
from app.api.idempotency import Idempotency
from app.api.limits import BodyLimit
from app.api.security import RateLimiter, TokenAuth
from app.config import Settings
from app.db import asyncpg_dsn, create_engine, is_outage
from app.durable.delivery import DeliveryWorker
from app.durable.janitor import FallbackPoll, Janitor
from app.durable.leases import LeaseKeeper
from app.durable.listener import Listener
from app.durable.runner import Runner
from app.durable.service import WorkflowService
from app.durable.store import Store
from app.embedded import EmbeddedPostgres
from app.logs import configure_logging
from app.mailer import create_mailer
from app.metrics import Metrics
from app.supervisor import Supervisor

logger = logging.getLogger("app")

SWAGGER_UI = Path(__file__).resolve().parent / "vendor" / "swagger-ui"

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


def process_owner() -> str:
    """This process's name on the leases it holds: host, pid and a nonce (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        async with contextlib.AsyncExitStack() as stack:
            database_url = settings.database_url
            if database_url is None:
                embedded = await asyncio.to_thread(EmbeddedPostgres.start, settings.data_dir)
                stack.push_async_callback(asyncio.to_thread, embedded.stop)
                database_url = embedded.url
            engine = create_engine(database_url, pool_size=settings.db_pool_size)
            stack.push_async_callback(engine.dispose)
            if settings.migrate_on_start:
                await migrate.upgrade(engine)

            owner = process_owner()
            store = Store(engine)
            listener = Listener(asyncpg_dsn(database_url))
            agent = await asyncio.to_thread(Agent, settings)
            stack.push_async_callback(agent.aclose)
            mailer = create_mailer(settings)
            metrics = Metrics()
            delivery = DeliveryWorker(
                store=store,
                mailer=mailer,
                listener=listener,
                metrics=metrics,
                settings=settings,
                owner=owner,
            )
            runner = Runner(
                store=store,
                agent=agent,
                listener=listener,
                metrics=metrics,
                settings=settings,
                owner=owner,
                delivery=delivery,
            )
            service = WorkflowService(
                store=store,
                listener=listener,
                runner=runner,
                delivery=delivery,
                settings=settings,
                owner=owner,
            )
            lease_keeper = LeaseKeeper(
                engine=engine,
                listener=listener,
                runner=runner,
                delivery=delivery,
                owner=owner,
                lease_seconds=settings.lease_seconds,
                answering=lambda: service.answering_idempotent,
            )
            # Leases first, then wake-ups: after a long disconnection this process's leases may
            # have lapsed, and its own workers must not be the ones to grab them back twice.
            listener.on_connected(lease_keeper.renew_on)
            listener.on_reconnected(metrics.listener_reconnects.inc)
            listener.on_work(runner.wake)
            listener.on_work(delivery.wake)

            supervisor = Supervisor()
            stack.push_async_callback(supervisor.stop)
            supervisor.start("listener", listener.run)
            try:
                async with asyncio.timeout(10):
                    await listener.wait_connected()
            except TimeoutError:
                logger.warning("the LISTEN connection is not up yet; polling covers until it is")
            supervisor.start("leases", lease_keeper.run)
            supervisor.start("janitor", Janitor(store=store, settings=settings).run)
            supervisor.start(
                "fallback-poll",
                FallbackPoll(
                    store=store,
                    listener=listener,
                    interval_seconds=settings.poll_interval_seconds,
                ).run,
            )
            supervisor.start("runner", runner.run)
            supervisor.start("delivery", delivery.run)

            app.state.settings = settings
            app.state.engine = engine
            app.state.schema_behind = migrate.revisions_before_head()
            app.state.metrics = metrics
            app.state.supervisor = supervisor
            app.state.service = service
            logger.info(
                "agent-notify %s ready: model %s, mail via %s, owner %s",
                __version__,
                settings.model,
                mailer.description,
                owner,
            )
            try:
                yield
            finally:
                await _shut_down(service, supervisor)

    app = FastAPI(
        title="agent-notify",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below, from the service's own copy of Swagger UI
    )
    install_error_handlers(app)
    app.state.subscribe_limiter = RateLimiter(settings.subscribe_rate_per_minute)
    # Added innermost first: tokens are checked before any of the body is read.
    app.add_middleware(Idempotency)
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(TokenAuth, tokens=settings.tokens, metrics_public=settings.metrics_public)
    app.include_router(health.router)
    app.include_router(ui.router)
    app.include_router(metrics_api.router)
    app.include_router(
        routes.listing,
        prefix="/workflows",
        tags=["workflows"],
        generate_unique_id_function=lambda route: f"workflows_{route.name}",
    )
    for router in (routes.router, promises.router, events.router):
        app.include_router(
            router,
            prefix="/workflows",
            tags=["workflows"],
            generate_unique_id_function=lambda route: f"workflows_{route.name}",
        )
        app.include_router(
            router,
            prefix="/AsyncNotificationsAgent",
            tags=["seed path style"],
            generate_unique_id_function=lambda route: f"seed_{route.name}",
        )

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

    return app


async def _shut_down(service: WorkflowService, supervisor: Supervisor) -> None:
    """Stop claiming, let in-flight work finish within the grace period, hand back the rest."""
    service.begin_shutdown()  # already begun if a signal arrived; this starts it otherwise
    await supervisor.stop("runner", "delivery")
    loop = asyncio.get_running_loop()
    assert service.shutdown_deadline is not None
    await service.runner.drain(max(0.0, service.shutdown_deadline - loop.time()))
    await service.delivery.drain(max(0.0, service.shutdown_deadline - loop.time()))
    await service.delivery.close()
    try:
        async with asyncio.timeout(5):
            await service.store.release_leases(owner=service.owner)
    except Exception as exc:
        if not (isinstance(exc, TimeoutError) or is_outage(exc)):
            raise
        logger.warning("could not hand back leases (%s); they expire on their own", exc)
    logger.info("agent-notify stopped")


app = create_app()
