"""Database URLs, the SQLAlchemy async engine (asyncpg driver), and how to read its errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, EmulatedDBAPIException
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.postgres_config import Pooler

# Exception types a database call can raise; is_outage() tells which instances are outages.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    # The asyncpg dialect's own error, raised as is by the pool outside a Connection (a
    # connection that cannot be opened); the driver's is its orig.
    EmulatedDBAPIException,
    OSError,
    PoolTimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

# SQLSTATEs of a server that is unreachable, shutting down, starting up, out of connections,
# or (after a failover) still a read-only standby.
OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "25006")
# SQLSTATEs with which a server refuses to open a session for the database for now: it does
# not accept connections to it (ALLOW_CONNECTIONS false, during maintenance), or it is gone
# (being restored). Outages only when opening a connection: statements never raise them.
REFUSED_SESSION_SQLSTATES = ("55000", "3D000")


def _behind(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every error behind it (causes, contexts, SQLAlchemy's `orig`), each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        orig = getattr(error, "orig", None)
        pending += [
            error.__cause__,
            error.__context__,
            orig if isinstance(orig, BaseException) else None,
        ]


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of the Postgres error behind `exc` (through SQLAlchemy's wrapping), if any."""
    for error in _behind(exc):
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate
    return None


def is_outage(exc: BaseException) -> bool:
    """True when `exc` means Postgres is unreachable or restarting: worth waiting out.

    False for errors no retry can fix (invalid data, constraint violations, bugs), which must
    surface instead of being retried forever.
    """
    for error in _behind(exc):
        if isinstance(error, OSError | PoolTimeoutError | asyncpg.ConnectionDoesNotExistError):
            return True
        if isinstance(error, asyncpg.InterfaceError) and "closed" in str(error):
            return True  # "connection is closed": the server went away under it
        if isinstance(error, asyncpg.InternalClientError):
            # The driver's state of the connection is off, as when the server's notice that it
            # ends the session arrived just before the socket's close: a fresh one will do.
            return True
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        opening = isinstance(error, DBAPIError) and error.statement is None  # no statement yet
        if opening and sqlstate_of(error) in REFUSED_SESSION_SQLSTATES:
            return True
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(OUTAGE_SQLSTATES):
            return True
    return False


# SQLSTATE class of a transaction rolled back by the server (deadlock, serialization failure):
# the same statement may well succeed when run again.
ROLLED_BACK_SQLSTATE_CLASS = "40"


def is_transient(exc: BaseException) -> bool:
    """True for an outage, or a statement the server rolled back for a conflict: worth running
    again. False for errors no retry can fix."""
    if is_outage(exc):
        return True
    sqlstate = sqlstate_of(exc)
    return sqlstate is not None and sqlstate.startswith(ROLLED_BACK_SQLSTATE_CLASS)


def sqlalchemy_url(database_url: str) -> str:
    """The URL with the asyncpg driver, whatever scheme the operator wrote (postgresql://,
    postgres://, postgresql+psycopg://, …)."""
    url = make_url(database_url)
    if url.drivername.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {url.drivername}://")
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(database_url: str) -> str:
    """The URL as plain asyncpg understands it (for the LISTEN connection)."""
    url = make_url(sqlalchemy_url(database_url))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# The longest a statement waits for a connection before it counts as an outage (503).
POOL_TIMEOUT_SECONDS = 30.0


def create_engine(database_url: str, *, pool_size: int, pooler: Pooler = "none") -> AsyncEngine:
    """One engine per process; its pool serves every query except LISTEN.

    Behind a transaction-mode pooler (`pooler="transaction"`) a client's consecutive
    transactions may run on different server sessions, so nothing may stay prepared between
    them: asyncpg's statement cache is turned off, and asyncpg then prepares every statement
    unnamed and parses it again in the same message batch as its Bind/Execute/Sync
    (`Connection._get_statement`: "assuming people are running PgBouncer"). SQLAlchemy's own
    statement cache is left on: `prepare()` follows asyncpg's setting, so the statements it
    keeps are unnamed ones parsed again with every execution too. Directly on Postgres, every
    connection keeps its statements prepared (one round trip per statement)."""
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "agent-notify"}}
    if pooler == "transaction":
        connect_args["statement_cache_size"] = 0
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        # No pre-ping (it would add a round trip to every statement): a connection broken by a
        # Postgres restart fails its first use, and SQLAlchemy then invalidates the pool's
        # connections made before it.
        pool_recycle=3600,
        connect_args=connect_args,
    )
