"""The schema comes from Alembic alone: it applies to an empty database and downgrades cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from app.db import migrate
from app.db.connection import asyncpg_dsn, create_engine
from app.db.models import Base

TABLES = {
    "workflow",
    "promise",
    "subscription",
    "idempotency_key",
    "step",
    "signing_key",
    "model_bucket",
    "model_slot",
    "model_pause",
}


async def tables(url: str) -> set[str]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


def _differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def test_upgrade_then_downgrade(new_database: Callable[[], Awaitable[str]]) -> None:
    url = await new_database()
    assert await tables(url) == set()
    engine = create_engine(url, pool_size=2)
    try:
        await migrate.upgrade(engine)
        assert await tables(url) == TABLES | {"alembic_version"}
        async with engine.connect() as connection:
            assert await connection.run_sync(migrate.current_revision) == migrate.head_revision()
            # The models mirror the migrations exactly.
            assert await connection.run_sync(_differences) == []

        await migrate.upgrade(engine)  # idempotent
        await migrate.downgrade(engine, "base")
        assert await tables(url) == {"alembic_version"}
        await migrate.upgrade(engine)
        assert await tables(url) == TABLES | {"alembic_version"}
    finally:
        await engine.dispose()


async def test_replicas_migrating_together_do_not_race(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    url = await new_database()
    engines = [create_engine(url, pool_size=1) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate.upgrade(engine) for engine in engines))
        assert await tables(url) == TABLES | {"alembic_version"}
    finally:
        for engine in engines:
            await engine.dispose()
