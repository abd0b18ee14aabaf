"""The key that signs the service's links (one-click unsubscribe), when SECRET_KEY is unset.

One row per purpose, written once: the first process to start generates a key and inserts it
(`ON CONFLICT DO NOTHING`), and every process reads back whichever row won, so all replicas
sign and check links with the same key.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_key",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("octet_length(secret) >= 32", name=op.f("ck_signing_key_secret_length")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_signing_key")),
    )


def downgrade() -> None:
    op.drop_table("signing_key")
