"""A subscription remembers when a send's outcome was unknown.

An SMTP server that was sent the message but never confirmed it (no final reply, or the
connection lost before it) may have taken it. `outcome_unknown_at` records the first such
attempt: the delivery worker sends that email once more after SMTP_UNKNOWN_RETRY_SECONDS, and
fails the subscription at a second unknown outcome instead of sending a copy per retry. A plain
nullable column: replicas of the release before this one read rows as jsonb and ignore it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "subscription", sa.Column("outcome_unknown_at", TIMESTAMP(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("subscription", "outcome_unknown_at")
