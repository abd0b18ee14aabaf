"""The W3C traceparent of the request that started a run, kept with the run.

The run's span (and its deliveries') take it as their parent wherever and whenever the run
executes — on another replica, after a restart — so one trace goes from the request to the
last notification. NULL when tracing was off at the start (or the request carried none).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-16 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workflow", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("workflow", "traceparent")
