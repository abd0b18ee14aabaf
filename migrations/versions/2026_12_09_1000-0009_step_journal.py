"""The step journal: every model turn and tool call of a run's agent loop is a row.

`step` belongs to one run: the workflow's key *and* its created_at (a key deleted and used again
is another run, whose steps never mix with the old one's; deleting a workflow deletes its steps).
`seq` orders a run's steps; the step's id stays the same when a step in flight at a crash runs
again (its `attempts` counts the executions), so a tool can de-duplicate on it.

The workflow gains the run's agent options: `tools` (the tool names it may call, NULL = every
configured tool) and `max_steps` (its model turns, NULL = AGENT_MAX_STEPS). Plain nullable
columns: replicas of the release before this one read rows as jsonb and ignore them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workflow", sa.Column("tools", JSONB, nullable=True))
    op.add_column("workflow", sa.Column("max_steps", sa.Integer, nullable=True))
    op.create_table(
        "step",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("workflow_key", sa.Text, nullable=False),
        sa.Column("run_created_at", TIMESTAMP(timezone=True), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("input", JSONB, nullable=True),
        sa.Column("output", JSONB, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, server_default=sa.text("1"), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=True),
        sa.Column("output_tokens", sa.Integer, nullable=True),
        sa.Column("cost_usd", sa.Double, nullable=True),
        sa.Column(
            "started_at", TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("finished_at", TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step")),
        sa.ForeignKeyConstraint(
            ["workflow_key"],
            ["workflow.key"],
            name=op.f("fk_step_workflow_key_workflow"),
            ondelete="CASCADE",
        ),
        # The run's journal in order: rebuilding a run and paging its steps walk this index.
        sa.UniqueConstraint(
            "workflow_key",
            "run_created_at",
            "seq",
            name=op.f("uq_step_workflow_key_run_created_at_seq"),
        ),
        sa.CheckConstraint("kind IN ('llm', 'tool')", name=op.f("ck_step_kind")),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name=op.f("ck_step_status")
        ),
    )


def downgrade() -> None:
    op.drop_table("step")
    op.drop_column("workflow", "max_steps")
    op.drop_column("workflow", "tools")
