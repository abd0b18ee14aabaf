"""`agent-notify`: `serve` and `migrate`, and the client commands of app/console/ (`run`,
`status`, `wait`, …) that talk to a running service.

`agent-notify serve` runs the same app as `uvicorn app.main:app`; the server around it is what
differs. It refuses to listen on a non-loopback address without `API_TOKENS` (unless
`ALLOW_UNAUTHENTICATED=true`), and gives uvicorn the connection guard of app/server.py and the
settings' host, port, keep-alive, shutdown grace and forwarding-header trust (uvicorn reads
`FORWARDED_ALLOW_IPS` too, but believes this host when it is unset). Under plain uvicorn the
app itself refuses requests that reach it on a non-loopback address without tokens
(app/api/exposure.py), and the guard needs `--http app.server:GuardedHTTP`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
from types import FrameType
from typing import Any

import click

from app import __version__
from app.console.commands import register


def _serve(host: str | None, port: int | None) -> None:
    import uvicorn

    from app.config import Settings
    from app.logs import configure_logging
    from app.main import create_app
    from app.server import ConnectionLimits, GuardedHTTP

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port}.items() if v is not None
    }
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


def _migrate() -> None:
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


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Durable AI-agent runs with notifications, on Postgres: the service (serve, migrate) "
    "and its client commands. Exit codes: 0 succeeded, 1 failed, 2 usage error, 3 service "
    "unreachable, 4 cancelled.",
)
@click.version_option(__version__, prog_name="agent-notify", message="%(prog)s %(version)s")
def cli() -> None:
    pass


@cli.command(help="Run the HTTP API and the background workers.")
@click.option("--host", help="Address to bind (default HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Port to bind (default PORT or 8080).")
def serve(host: str | None, port: int | None) -> None:
    _serve(host, port)


@cli.command(help="Apply database migrations and exit.")
def migrate() -> None:
    _migrate()


register(cli)


def main(argv: list[str] | None = None) -> None:
    """The `agent-notify` command; exits with the command's code (SystemExit)."""
    cli.main(args=argv, prog_name="agent-notify")


if __name__ == "__main__":
    main(sys.argv[1:])
