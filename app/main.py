"""The application factory: the lifespan builds the database, listener and workers, in order.

`app` is importable as `app.main:app` for `uvicorn app.main:app`; `agent-notify serve` builds
the same app with the same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import FrameType
from typing import Any

from fastapi import FastAPI

from app import __version__, tracing
from app.api import agent as agent_api
from app.api import (
    approvals,
    events,
    health,
    promises,
    resume,
    routes,
    steps,
    subscribe,
    ui,
    unsubscribe,
)
from app.api import metrics as metrics_api
from app.api.docs import DESCRIPTION, install_docs
from app.api.errors import install_error_handlers
from app.api.exposure import LoopbackOnly
from app.api.idempotency import Idempotency
from app.api.limits import BodyLimit
from app.api.security import RateLimiter, TokenAuth
from app.config import Settings
from app.logs import configure_logging
from app.workflows.process import ServiceProcess

logger = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        async with tracing.started(), ServiceProcess.running(settings) as process:
            app.state.settings = settings
            app.state.process = process
            app.state.service = process.service
            # What is loaded by now (litellm alone is ~400,000 objects) lives as long as the
            # process: out of the collector's sight, a full collection under load does not
            # pause the event loop to walk it. No full collection first: it would cost every
            # start half a second (and a process that starts apps one after another, as the
            # tests do, that again and again) to spare the little garbage left from the imports.
            gc.freeze()
            try:
                with _shutdown_on_signal(process.service.begin_shutdown):
                    yield
            finally:
                gc.unfreeze()

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
    if not settings.tokens and not settings.allow_unauthenticated:
        app.add_middleware(LoopbackOnly, settings=settings)
    app.include_router(health.router)
    app.include_router(ui.router)
    app.include_router(unsubscribe.router)
    app.include_router(approvals.router)
    app.include_router(metrics_api.router)
    app.include_router(agent_api.router)
    app.include_router(
        routes.listing,
        prefix="/workflows",
        tags=["workflows"],
        generate_unique_id_function=lambda route: f"workflows_{route.name}",
    )
    routers = (
        routes.router,
        subscribe.router,
        promises.router,
        steps.router,
        resume.router,
        events.router,
    )
    for router in routers:
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

    install_docs(app)
    if tracing.wanted():
        tracing.instrument_app(app)
    return app


@contextlib.contextmanager
def _shutdown_on_signal(begin_shutdown: Callable[[], None]) -> Iterator[None]:
    """The moment SIGTERM or SIGINT arrives, tell the service (it stops taking work and
    releases waiting requests, so open connections and in-flight work drain within one grace
    period), then let the server's own handler run. The same however the app is served
    (`agent-notify serve`, `uvicorn app.main:app`); nothing is chained where the server
    installed no handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A handler runs between bytecodes of the main thread, outside the loop: hand over.
    loop = asyncio.get_running_loop()
    chained: dict[signal.Signals, tuple[Any, Any]] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if callable(previous):

            def handle(number: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(begin_shutdown)
                previous(number, frame)

            signal.signal(signum, handle)
            chained[signum] = (handle, previous)
    try:
        yield
    finally:
        for signum, (handle, previous) in chained.items():
            if signal.getsignal(signum) is handle:
                signal.signal(signum, previous)


app = create_app()
