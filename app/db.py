"""Database URLs and the SQLAlchemy async engine (asyncpg driver)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# What a statement raises while Postgres is down, restarting or unreachable: driver errors
# wrapped by SQLAlchemy, socket errors from connecting, and the pool's checkout timeout.
DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, OSError, PoolTimeoutError)


def sqlalchemy_url(database_url: str) -> str:
    """The URL with the asyncpg driver, whatever scheme the operator wrote."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {url.drivername}://")
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(database_url: str) -> str:
    """The URL as plain asyncpg understands it (for the LISTEN connection)."""
    url = make_url(sqlalchemy_url(database_url))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(database_url: str, *, pool_size: int) -> AsyncEngine:
    """One engine per process; its pool serves every query except LISTEN."""
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
        # No pre-ping (it would add a round trip to every transaction): a connection broken by a
        # Postgres restart fails its first use, SQLAlchemy then invalidates the pool's connections.
        pool_recycle=3600,
        connect_args={"server_settings": {"application_name": "agent-notify"}},
    )
