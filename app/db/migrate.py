"""Apply Alembic migrations, serialised across processes by a Postgres advisory lock.

The service migrates over a direct connection (`LISTEN_DATABASE_URL`, else `DATABASE_URL`),
never through a transaction-mode pooler: Alembic runs through SQLAlchemy's default execution
path (statements kept prepared on the connection), which such a pooler breaks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.connection import create_engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Any fixed 64-bit number unique to this application: replicas starting together queue on it.
MIGRATION_LOCK_ID = 0x61676E746E6F7466  # "agntnotf"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revisions_before_head() -> frozenset[str | None]:
    """Schema versions this code knows and must upgrade from (None: an empty database)."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    return frozenset({r.revision for r in script.walk_revisions() if r.revision != head} | {None})


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, revision: str) -> None:
    # Transaction-scoped lock: released by the commit that also records the new version.
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    before = current_revision(connection)
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    after = current_revision(connection)
    if before != after:
        logger.info("database migrated from %s to %s", before or "empty", after)
    else:
        logger.info("database schema is at %s", after)


def _downgrade(connection: Connection, revision: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to call from several processes at once."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)


async def upgrade_database(database_url: str, revision: str = "head") -> None:
    """`upgrade()` over one connection of its own to `database_url`, closed at the end."""
    engine = create_engine(database_url, pool_size=1)
    try:
        await upgrade(engine, revision)
    finally:
        await engine.dispose()


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_downgrade, revision)
