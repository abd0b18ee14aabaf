"""Workflows belong to the API token that created them (issue 19).

- `workflow.created_by`: the name of the token whose request created the run (`name:token` or
  `admin:name:token` in API_TOKENS); NULL for a run created by an unnamed token (the plain
  form), with API_TOKENS unset, or before this release: only admins see such a run.
- `promise.created_by`: who claimed a key by subscribing to it before its run existed (a user
  token's subscriber claims the key, so no other user can start a run there and have it
  announced to them); NULL otherwise.
- `ix_workflow_created_by_created_at_key`: a user's list walks only its own workflows, newest
  first, as the admin's list walks ix_workflow_created_at_key.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-15 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites no row.
    op.add_column("workflow", sa.Column("created_by", sa.Text(), nullable=True))
    op.add_column("promise", sa.Column("created_by", sa.Text(), nullable=True))
    op.create_index(
        "ix_workflow_created_by_created_at_key",
        "workflow",
        ["created_by", "created_at", "key"],
        postgresql_where=sa.text("created_by IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_created_by_created_at_key", table_name="workflow")
    op.drop_column("promise", "created_by")
    op.drop_column("workflow", "created_by")
