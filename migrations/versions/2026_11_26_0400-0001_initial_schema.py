"""Initial schema: workflow, promise, subscription.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflow",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", TZ, nullable=True),
        sa.Column("next_attempt_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_workflow_status"),
        ),
        sa.CheckConstraint(
            "char_length(key) BETWEEN 1 AND 256", name=op.f("ck_workflow_key_length")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_workflow")),
    )
    op.create_index(
        "ix_workflow_claimable",
        "workflow",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.create_index("ix_workflow_created_at", "workflow", ["created_at"])

    op.create_table(
        "promise",
        sa.Column("workflow_key", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", TZ, nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'resolved', 'rejected')", name=op.f("ck_promise_state")
        ),
        sa.PrimaryKeyConstraint("workflow_key", "name", name=op.f("pk_promise")),
    )

    op.create_table(
        "subscription",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workflow_key", sa.Text(), nullable=False),
        sa.Column("promise_name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", TZ, nullable=True),
        sa.Column("next_attempt_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("created_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("ready_at", TZ, nullable=True),
        sa.Column("sent_at", TZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('waiting', 'ready', 'sent', 'failed', 'cancelled', 'expired')",
            name=op.f("ck_subscription_status"),
        ),
        sa.ForeignKeyConstraint(
            ["workflow_key", "promise_name"],
            ["promise.workflow_key", "promise.name"],
            name=op.f("fk_subscription_workflow_key_promise_name_promise"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription")),
        sa.UniqueConstraint(
            "workflow_key",
            "promise_name",
            "email",
            name=op.f("uq_subscription_workflow_key_promise_name_email"),
        ),
    )
    op.create_index(
        "ix_subscription_claimable",
        "subscription",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'ready'"),
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_claimable", table_name="subscription")
    op.drop_table("subscription")
    op.drop_table("promise")
    op.drop_index("ix_workflow_created_at", table_name="workflow")
    op.drop_index("ix_workflow_claimable", table_name="workflow")
    op.drop_table("workflow")
