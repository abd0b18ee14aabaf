"""The rule functions' NOTIFYs can be turned off by their caller: a NULL channel sends none.

A NOTIFY in a writing transaction takes Postgres' one notify lock at commit and holds it through
the WAL flush, so notifying commits go one at a time (docs/scaling.md). The service now commits
its changes without one and sends the wake-ups afterwards, coalesced, in a transaction of their
own (app/db/wakeups.py): it passes NULL channels to these functions.

`agent_notify_wake_v1(channel, payload)` is `pg_notify` except that a NULL channel sends
nothing; every `agent_notify_*` function that called `pg_notify(` calls it instead, its body
otherwise unchanged (rewritten from its own definition, `pg_get_functiondef`). A replica of the
release before this one passes its channels as before and still NOTIFYs in the transaction,
so both can run during a rolling deploy. This release needs the schema at 0017 (pg_notify with
a NULL channel raises): migrate first (MIGRATE_ON_START, or `agent-notify migrate`), as for any
release that changes the schema.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-17 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAKE = r"""
CREATE FUNCTION agent_notify_wake_v1(p_channel text, p_payload text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_channel IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_payload);
    END IF;
END
$$
"""


def _rewrite(calling: str, to: str) -> str:
    """Re-create every agent_notify_* function whose body calls `calling` so it calls `to`."""
    return rf"""
DO $$
DECLARE
    f oid;
BEGIN
    FOR f IN
        SELECT p.oid FROM pg_proc AS p
        WHERE p.pronamespace = current_schema()::regnamespace
          AND p.proname LIKE 'agent\_notify\_%' AND p.proname <> 'agent_notify_wake_v1'
          AND strpos(p.prosrc, '{calling}') > 0
    LOOP
        EXECUTE replace(pg_get_functiondef(f), '{calling}', '{to}');
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(WAKE)
    op.execute(_rewrite("pg_notify(", "agent_notify_wake_v1("))


def downgrade() -> None:
    op.execute(_rewrite("agent_notify_wake_v1(", "pg_notify("))
    op.execute("DROP FUNCTION agent_notify_wake_v1(text, text)")
