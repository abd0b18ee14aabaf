"""`agent-notify serve` and `agent-notify migrate`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import socket
import sys
from types import FrameType

from app import __version__


def _serve(args: argparse.Namespace) -> None:
    import uvicorn
    from fastapi import FastAPI

    from app.config import Settings
    from app.logs import configure_logging
    from app.main import create_app

    class Server(uvicorn.Server):
        """uvicorn's server, telling the service the moment a shutdown signal arrives.

        The service then stops taking work and releases waiting requests at once, so open
        connections and in-flight work drain within one grace period; and the process exits 0
        after a graceful shutdown (uvicorn would re-raise the signal).
        """

        def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
            super().__init__(config)
            self._app = app

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # What is loaded by now (litellm alone is ~400,000 objects) lives as long as the
            # process: out of the collector's sight, a full collection under load takes
            # microseconds instead of pausing the event loop ~150 ms (docs/benchmarks.md).
            gc.collect()
            gc.freeze()

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()
            service = getattr(self._app.state, "service", None)
            if service is not None:
                asyncio.get_event_loop().call_soon_threadsafe(service.begin_shutdown)

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = Settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # loop and http stay "auto": uvloop and httptools, which pyproject.toml installs (the
    # asyncio loop and h11 where they are missing).
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # JSON logs: uvicorn's lines go through our handler instead of its own text ones.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace_seconds)),
        # An idle keep-alive connection is closed by the client or the proxy in front, never
        # by us first: at uvicorn's default (5 s, the same as httpx's and many clients'), a
        # request sent on a connection just as we close it fails with a reset (seen in CI).
        # Longer than the common proxies' idle timeouts (60 s).
        timeout_keep_alive=75,
        proxy_headers=True,
    )
    Server(config, app).run()


def _migrate(_args: argparse.Namespace) -> None:
    from app import migrate
    from app.config import Settings
    from app.db import create_engine
    from app.embedded import EmbeddedPostgres
    from app.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("app.migrate").setLevel(logging.INFO)

    async def run() -> None:
        embedded = None
        database_url = settings.database_url
        if database_url is None:
            embedded = await asyncio.to_thread(EmbeddedPostgres.start, settings.data_dir)
            database_url = embedded.url
        engine = create_engine(database_url, pool_size=1)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="agent-notify",
        description="Durable AI-agent runs with email notifications, on Postgres.",
    )
    parser.add_argument("--version", action="version", version=f"agent-notify {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API and the background workers")
    serve.add_argument("--host", help="address to bind (default HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default PORT or 8080)")
    serve.set_defaults(handler=_serve)
    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    migrate.set_defaults(handler=_migrate)
    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main(sys.argv[1:])
