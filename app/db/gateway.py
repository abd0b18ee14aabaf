"""The one connector: every statement the service runs is named in queries.sql and runs here.

Statements run through SQLAlchemy Core (`text()`, the engine's pool, the asyncpg driver). One
outside a transaction runs in autocommit: it is its own transaction, with no BEGIN and COMMIT
round trips. `transaction()` groups statements that must see one snapshot.

The pool holds one connection more than ordinary callers may take at once: the urgent lane
(`Database.urgent`) always finds it free, so lease renewals never queue behind a burst of
requests until leases lapse and others take the work over.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Row, TextClause, text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.connection import POOL_TIMEOUT_SECONDS, create_engine

QUERIES_FILE = Path(__file__).with_name("queries.sql")
_NAME_LINE = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)

Isolation = Literal["READ COMMITTED", "REPEATABLE READ"]


def load_queries(source: str) -> dict[str, str]:
    """The statements of a queries.sql text, by name (comment lines dropped)."""
    parts = _NAME_LINE.split(source)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql names {name!r} twice")
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip()
    return queries


QUERIES: Mapping[str, str] = load_queries(QUERIES_FILE.read_text(encoding="utf-8"))
_STATEMENTS: dict[str, TextClause] = {name: text(sql) for name, sql in QUERIES.items()}


def statement(name: str) -> TextClause:
    try:
        return _STATEMENTS[name]
    except KeyError:
        raise KeyError(f"no statement {name!r} in {QUERIES_FILE.name}") from None


class Statements:
    """Running named statements on one connection; the rows are SQLAlchemy `Row`s."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def fetch(self, query: str, /, **params: Any) -> Sequence[Row[Any]]:
        result = await self._connection.execute(statement(query), params)
        return result.all()

    async def fetchrow(self, query: str, /, **params: Any) -> Row[Any] | None:
        result = await self._connection.execute(statement(query), params)
        return result.one_or_none()

    async def fetchval(self, query: str, /, **params: Any) -> Any:
        result = await self._connection.execute(statement(query), params)
        return result.scalar()

    async def execute(self, query: str, /, **params: Any) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        result = await self._connection.execute(statement(query), params)
        return result.rowcount


@dataclass(frozen=True, slots=True)
class _Lane:
    """Who may take a connection now: ordinary callers share a bounded number of them, and
    wait for one at most as long as the pool would make them wait (then PoolTimeoutError, a
    database outage to every caller)."""

    limit: asyncio.Semaphore | None
    timeout_seconds: float = 0.0

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self.limit is None:
            yield
            return
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await self.limit.acquire()
        except TimeoutError:
            raise PoolTimeoutError(
                f"no database connection free within {self.timeout_seconds:g} s"
            ) from None
        try:
            yield
        finally:
            self.limit.release()


class Database:
    """Named statements over one engine, whose pool holds `connections` + 1 connections:
    ordinary callers take at most `connections` at once, `urgent` callers the one left."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        connections: int,
        wait_seconds: float = POOL_TIMEOUT_SECONDS,
    ) -> None:
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._lane = _Lane(asyncio.Semaphore(connections), wait_seconds)
        self._connections = connections

    @classmethod
    def connect(cls, database_url: str, *, connections: int) -> Database:
        """A database over a new engine (no connection is opened until the first statement)."""
        return cls(create_engine(database_url, pool_size=connections + 1), connections=connections)

    @property
    def urgent(self) -> Database:
        """The same statements on the lane that always has a connection free."""
        urgent = Database(self._engine, connections=self._connections)
        urgent._lane = _Lane(None)
        return urgent

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        """Close every pooled connection (at shutdown)."""
        await self._engine.dispose()

    async def fetch(self, query: str, /, **params: Any) -> Sequence[Row[Any]]:
        async with self._single() as statements:
            return await statements.fetch(query, **params)

    async def fetchrow(self, query: str, /, **params: Any) -> Row[Any] | None:
        async with self._single() as statements:
            return await statements.fetchrow(query, **params)

    async def fetchval(self, query: str, /, **params: Any) -> Any:
        async with self._single() as statements:
            return await statements.fetchval(query, **params)

    async def execute(self, query: str, /, **params: Any) -> int:
        async with self._single() as statements:
            return await statements.execute(query, **params)

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, isolation: Isolation = "READ COMMITTED"
    ) -> AsyncIterator[Statements]:
        """Statements in one transaction, committed at the end (rolled back on an error)."""
        async with self._lane.turn(), self._engine.connect() as connection:
            if isolation != "READ COMMITTED":
                await connection.execution_options(isolation_level=isolation)
            async with connection.begin():
                yield Statements(connection)

    @contextlib.asynccontextmanager
    async def _single(self) -> AsyncIterator[Statements]:
        async with self._lane.turn(), self._autocommit.connect() as connection:
            yield Statements(connection)
