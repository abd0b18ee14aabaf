"""The one connector: every statement the service runs is named in queries.sql and runs here.

Statements are loaded once, compiled by SQLAlchemy to the driver's positional form, and run on
the asyncpg connections of the engine's pool (`AsyncConnection.get_raw_connection()`). The pool,
its connection set-up (the jsonb codec, the application name) and its accounting stay
SQLAlchemy's; each statement skips the execution layer it does not need. One outside a
transaction runs in autocommit: it is its own transaction, with no BEGIN and COMMIT round
trips. `transaction()` groups statements that must see one snapshot.

A connection that fails other than with an SQL error (cancelled, timed out, broken) is closed,
never reused; an outage (a Postgres restart) replaces the pool, so the connections made before
it fail no further statement.

The pool holds one connection more than ordinary callers may take at once: the urgent lane
(`Database.urgent`) always finds it free, so lease renewals never queue behind a burst of
requests until leases lapse and others take the work over.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.connection import POOL_TIMEOUT_SECONDS, create_engine, is_outage
from app.postgres_config import Pooler

QUERIES_FILE = Path(__file__).with_name("queries.sql")
_NAME_LINE = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)

Isolation = Literal["read_committed", "repeatable_read"]


class Record(Protocol):
    """A row as the driver returns it (asyncpg's Record): values by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


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


@dataclass(frozen=True, slots=True)
class Statement:
    """A named statement in the driver's form: `$n` placeholders, and the names they stand for."""

    name: str
    sql: str
    parameters: tuple[str, ...]

    @classmethod
    def compile(cls, name: str, sql: str) -> Statement:
        compiled = text(sql).compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        return cls(name, compiled.string, tuple(compiled.positiontup or ()))

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments from named ones (extra names are ignored)."""
        try:
            return [params[name] for name in self.parameters]
        except KeyError as exc:
            raise TypeError(f"statement {self.name!r} needs a value for {exc}") from None


QUERIES: Mapping[str, str] = load_queries(QUERIES_FILE.read_text(encoding="utf-8"))
_STATEMENTS: dict[str, Statement] = {
    name: Statement.compile(name, sql) for name, sql in QUERIES.items()
}


def statement(name: str) -> Statement:
    try:
        return _STATEMENTS[name]
    except KeyError:
        raise KeyError(f"no statement {name!r} in {QUERIES_FILE.name}") from None


class Statements:
    """Running named statements on one driver connection; rows are asyncpg Records."""

    def __init__(
        self, connection: asyncpg.Connection, sent: list[Callable[[], None]] | None = None
    ) -> None:
        self._connection = connection
        self._sent = sent or []  # called for every statement (the statements' metric)

    def _named(self, query: str) -> Statement:
        for hook in self._sent:
            hook()
        return statement(query)

    async def fetch(self, query: str, /, **params: Any) -> list[Record]:
        named = self._named(query)
        rows: list[Record] = await self._connection.fetch(named.sql, *named.arguments(params))
        return rows

    async def fetchrow(self, query: str, /, **params: Any) -> Record | None:
        named = self._named(query)
        row: Record | None = await self._connection.fetchrow(named.sql, *named.arguments(params))
        return row

    async def fetchval(self, query: str, /, **params: Any) -> Any:
        named = self._named(query)
        return await self._connection.fetchval(named.sql, *named.arguments(params))

    async def execute(self, query: str, /, **params: Any) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        named = self._named(query)
        status: str = await self._connection.execute(named.sql, *named.arguments(params))
        # asyncpg answers the command tag: "UPDATE 3", "DELETE 0", "INSERT 0 1".
        count = status.rpartition(" ")[2]
        return int(count) if count.isdigit() else 0


@dataclass(frozen=True, slots=True)
class _Lane:
    """Who may take a connection now: ordinary callers share a bounded number of them, and
    wait for one at most as long as the pool would make them wait (then PoolTimeoutError, a
    database outage to every caller). The urgent lane has no limit."""

    limit: asyncio.Semaphore | None
    timeout_seconds: float = 0.0

    async def enter(self) -> None:
        if self.limit is None:
            return
        if not self.limit.locked():
            await self.limit.acquire()
            return
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await self.limit.acquire()
        except TimeoutError:
            raise PoolTimeoutError(
                f"no database connection free within {self.timeout_seconds:g} s"
            ) from None

    def leave(self) -> None:
        if self.limit is not None:
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
        self._lane = _Lane(asyncio.Semaphore(connections), wait_seconds)
        self._connections = connections
        self._sent: list[Callable[[], None]] = []  # shared by the lanes
        self._closing: list[Callable[[], Awaitable[None]]] = []

    def on_statement(self, hook: Callable[[], None]) -> None:
        """Call `hook` for every statement sent, on every lane (a metric's counter)."""
        self._sent.append(hook)

    @classmethod
    def connect(cls, database_url: str, *, connections: int, pooler: Pooler = "none") -> Database:
        """A database over a new engine (no connection is opened until the first statement)."""
        engine = create_engine(database_url, pool_size=connections + 1, pooler=pooler)
        return cls(engine, connections=connections)

    @property
    def urgent(self) -> Database:
        """The same statements on the lane that always has a connection free."""
        urgent = Database(self._engine, connections=self._connections)
        urgent._lane = _Lane(None)
        urgent._sent = self._sent
        return urgent

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def on_close(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Await `hook` when the database is closed, before its connections are."""
        self._closing.append(hook)

    async def close(self) -> None:
        """Close every pooled connection (at shutdown), once what waits for close is done."""
        for hook in self._closing:
            await hook()
        await self._engine.dispose()

    async def fetch(self, query: str, /, **params: Any) -> list[Record]:
        async with self._driver() as driver:
            return await Statements(driver, self._sent).fetch(query, **params)

    async def fetchrow(self, query: str, /, **params: Any) -> Record | None:
        async with self._driver() as driver:
            return await Statements(driver, self._sent).fetchrow(query, **params)

    async def fetchval(self, query: str, /, **params: Any) -> Any:
        async with self._driver() as driver:
            return await Statements(driver, self._sent).fetchval(query, **params)

    async def execute(self, query: str, /, **params: Any) -> int:
        async with self._driver() as driver:
            return await Statements(driver, self._sent).execute(query, **params)

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, isolation: Isolation = "read_committed"
    ) -> AsyncIterator[Statements]:
        """Statements in one transaction, committed at the end (rolled back on an error)."""
        async with self._driver() as driver, driver.transaction(isolation=isolation):
            yield Statements(driver, self._sent)

    @contextlib.asynccontextmanager
    async def _driver(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool, as the driver's own."""
        await self._lane.enter()
        try:
            async with self._engine.connect() as connection:
                raw = await connection.get_raw_connection()
                if raw.driver_connection is None or raw.driver_connection.is_closed():
                    # Closed under the pool: a cancelled statement's invalidation (shielded)
                    # can still be under way when a second cancellation hands its connection
                    # back. A local flag, no round trip: take a fresh one instead of failing.
                    await connection.invalidate()
                    raw = await connection.get_raw_connection()
                try:
                    yield raw.driver_connection
                except BaseException as exc:
                    await self._discard(connection, exc)
                    raise
        finally:
            self._lane.leave()

    async def _discard(self, connection: AsyncConnection, exc: BaseException) -> None:
        """After a failure: an SQL error leaves the connection fine; anything else (cancelled,
        timed out, broken) closes it; an outage also replaces the pool (its other connections
        were made before it, and are as dead)."""
        if isinstance(exc, asyncpg.PostgresError) and not is_outage(exc):
            return
        with contextlib.suppress(Exception):
            await asyncio.shield(connection.invalidate(exc if isinstance(exc, Exception) else None))
        if is_outage(exc):
            await self._engine.dispose(close=False)
