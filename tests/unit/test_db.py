"""Which database errors are outages (waited out) and which are not (surfaced at once); the
Postgres settings that go together."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.config import Settings
from app.db.connection import is_outage, sqlalchemy_url


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (PoolTimeoutError("pool exhausted"), True),
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.AdminShutdownError("terminating connection"), True),
        (asyncpg.InterfaceError("connection is closed"), True),
        (OperationalError("SELECT 1", {}, DriverError("08006")), True),
        (OperationalError("UPDATE x", {}, DriverError("25006")), True),
        (asyncpg.InternalClientError("cannot switch to state 11; another operation"), True),
        # A server that refuses sessions to the database for now, when connecting…
        (OperationalError(None, None, DriverError("55000")), True),
        # …and the same SQLSTATE from a statement: not an outage.
        (OperationalError("SELECT currval('s')", {}, DriverError("55000")), False),
        (DataError("INSERT", {}, DriverError("22021")), False),
        (
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            False,
        ),
        (ValueError("a bug"), False),
    ],
)
def test_is_outage(error: Exception, outage: bool) -> None:
    assert is_outage(error) is outage


def test_database_urls_get_the_asyncpg_driver() -> None:
    assert sqlalchemy_url("postgres://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert sqlalchemy_url("postgresql://u@/db?host=/tmp/s").startswith("postgresql+asyncpg://")
    with pytest.raises(ValueError, match="postgresql://"):
        sqlalchemy_url("mysql://u@h/db")


def test_a_transaction_pooler_needs_a_direct_url_for_listen_and_migrations() -> None:
    with pytest.raises(ValidationError, match="LISTEN_DATABASE_URL"):
        Settings(database_pooler="transaction", database_url="postgresql://pooler:6432/db")
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        Settings(database_pooler="transaction", listen_database_url="postgresql://pg:5432/db")
    settings = Settings(
        database_pooler="transaction",
        database_url="postgresql://pooler:6432/db",
        listen_database_url="postgresql://pg:5432/db",
    )
    assert settings.database_pooler == "transaction"
    assert Settings(listen_database_url=" ").listen_database_url is None
