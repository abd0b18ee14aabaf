"""`agent-notify serve` and `agent-notify migrate`.

`agent-notify serve` runs the same app as `uvicorn app.main:app`; the server around it is what
differs. It refuses to listen on a non-loopback address without `API_TOKENS` (unless
`ALLOW_UNAUTHENTICATED=true`), and gives uvicorn the connection guard of app/server.py and the
settings' host, port, keep-alive, shutdown grace and forwarding-header trust (uvicorn reads
`FORWARDED_ALLOW_IPS` too, but believes this host when it is unset). Under plain uvicorn the
app itself refuses requests that reach it on a non-loopback address without tokens
(app/api/exposure.py), and the guard needs `--http app.server:GuardedHTTP`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from types import FrameType

from app import __version__


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from app.config import Settings
    from app.logs import configure_logging
    from app.main import create_app
    from app.server import ConnectionLimits, GuardedHTTP

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = Settings(**overrides)
    refusal = settings.unauthenticated_exposure(settings.host)
    if refusal is not None:
        raise SystemExit(f"agent-notify serve: refusing to start: {refusal}")
    configure_logging(settings.log_level, settings.log_format)
    # The app, its start-up and its shutdown are those of `uvicorn app.main:app`; this command
    # adds the server's settings that follow from ours, and the connection guard
    # (app/server.py: MAX_CONNECTIONS, HEADER_TIMEOUT_SECONDS, MAX_HEADER_BYTES), which
    # `uvicorn app.main:app` has only with `--http app.server:GuardedHTTP`. The loop stays
    # "auto" (uvloop); the guard hands each connection to uvicorn's httptools protocol.
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=GuardedHTTP.bound(ConnectionLimits.from_settings(settings)),
        # The app serves no WebSocket: an upgrade request is answered as a plain one.
        ws="none",
        log_level=settings.log_level.lower(),
        # JSON logs: uvicorn's lines go through our handler instead of its own text ones.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace_seconds)),
        # Idle after a response: KEEP_ALIVE_SECONDS (75 by default, longer than the common
        # proxies' idle timeouts, so that the proxy closes an idle connection, not us while it
        # sends a request on it). Until a request head is in, the guard's deadline holds.
        timeout_keep_alive=settings.keep_alive_seconds,
        # Forwarding headers only from the proxies the operator names (uvicorn's own default
        # would believe any client on this host).
        proxy_headers=bool(settings.forwarded_allow_ips.strip()),
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    # After a graceful stop uvicorn re-raises the signal it caught, to end the process the way
    # the signal would have; it finds this handler: the stop was graceful, so the exit is 0.
    signal.signal(signal.SIGTERM, _exit_quietly)
    signal.signal(signal.SIGINT, _exit_quietly)
    uvicorn.Server(config).run()


def _exit_quietly(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _migrate(_args: argparse.Namespace) -> None:
    from app.config import Settings
    from app.db import migrate
    from app.db.embedded import EmbeddedPostgres
    from app.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("app.db.migrate").setLevel(logging.INFO)

    async def run() -> None:
        embedded = None
        database_url = settings.database_url
        if database_url is None:
            embedded = await asyncio.to_thread(EmbeddedPostgres.start, settings.data_dir)
            database_url = embedded.url
        try:
            # Directly, never through a transaction-mode pooler (app/db/migrate.py).
            await migrate.upgrade_database(settings.listen_database_url or database_url)
        finally:
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
