"""Keyset pagination indexes for listing workflows; the idempotency_key table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    # Listing is newest first by (created_at, key), optionally for one status.
    op.drop_index("ix_workflow_created_at", table_name="workflow")
    op.create_index("ix_workflow_created_at_key", "workflow", ["created_at", "key"])
    op.create_index(
        "ix_workflow_status_created_at_key", "workflow", ["status", "created_at", "key"]
    )
    # The retention janitor's scan of finished workflows.
    op.create_index(
        "ix_workflow_finished_at",
        "workflow",
        ["finished_at"],
        postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"),
    )
    op.create_table(
        "idempotency_key",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claim_expires_at", TZ, nullable=True),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", TZ, nullable=True),
        sa.CheckConstraint(
            "char_length(key) BETWEEN 1 AND 256", name=op.f("ck_idempotency_key_key_length")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_key")),
    )
    op.create_index("ix_idempotency_key_created_at", "idempotency_key", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_key_created_at", table_name="idempotency_key")
    op.drop_table("idempotency_key")
    op.drop_index("ix_workflow_finished_at", table_name="workflow")
    op.drop_index("ix_workflow_status_created_at_key", table_name="workflow")
    op.drop_index("ix_workflow_created_at_key", table_name="workflow")
    op.create_index("ix_workflow_created_at", "workflow", ["created_at"])
