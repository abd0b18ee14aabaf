"""The Postgres settings: where the database is, and how the service connects to it.

A group of `Settings` fields, kept in a module of its own (a mixin of app/config.py's class)
because they are validated together: a transaction-mode pooler needs a direct URL beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

Pooler = Literal["none", "transaction"]


class PostgresSettings(BaseSettings):
    database_url: str | None = Field(
        None,
        description=(
            "`postgresql://user:pass@host:5432/db`; unset: an embedded Postgres in "
            "`DATA_DIR/pg`, started and stopped with the service"
        ),
    )
    database_pooler: Pooler = Field(
        "none",
        description=(
            "`transaction`: `DATABASE_URL` is a pooler in transaction mode (PgBouncer, RDS "
            "Proxy, Supavisor, …), where consecutive transactions of one client may run on "
            "different server sessions; statements are then prepared unnamed with every "
            "execution (asyncpg's statement cache off: one more round trip each), and "
            "`LISTEN_DATABASE_URL` is required. `none`: a direct connection (or a pooler in "
            "session mode); statements stay prepared on each connection"
        ),
    )
    listen_database_url: str | None = Field(
        None,
        description=(
            "a direct (session) connection to the same database, bypassing any pooler: the "
            "LISTEN connection and the migrations (with their advisory lock) use it; unset: "
            "`DATABASE_URL`"
        ),
    )
    data_dir: Path = Field(
        Path(".data"),
        description="the embedded Postgres's data and the default outbox (relative to the "
        "working directory)",
    )
    db_pool_size: int = Field(
        10,
        ge=1,
        description=(
            "query connections per process; each process opens two more: one kept for lease "
            "renewals, and the LISTEN connection"
        ),
    )
    migrate_on_start: bool = Field(
        True,
        description="apply the migrations at start-up (under an advisory lock, so replicas "
        "can start together)",
    )

    @field_validator("database_url", "listen_database_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        # Spaces only (a stray `VAR= ` in an .env file) would otherwise name a database.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _pooler_has_a_direct_url(self) -> Self:
        # Refused at start-up rather than found out later: through a transaction-mode pooler,
        # LISTEN hears nothing once its transaction ends, and the migrations' advisory lock
        # could be taken on one server session and its work done on another.
        if self.database_pooler == "transaction" and (
            self.database_url is None or self.listen_database_url is None
        ):
            raise ValueError(
                "DATABASE_POOLER=transaction needs DATABASE_URL (the pooler) and "
                "LISTEN_DATABASE_URL (a direct connection to the same database, for LISTEN "
                "and the migrations)"
            )
        return self
