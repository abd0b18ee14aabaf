"""Flow control per model across replicas, and run priorities.

- `workflow.priority` (-100..100, default 0): claims go by `agent_notify_claim_rank_v1(due,
  priority)`, the due time moved earlier by 10 seconds per priority point, so a higher
  priority goes first and a lower one waits at most 10 s per point of difference (aging).
  The rank is a function of the row alone: a partial index on it serves the claim in order.
- `model_bucket`: one row per AGENT_MODEL_LIMITS entry, locked by whoever takes or gives back
  a slot of it; it holds the request and token counts of the current one-minute window.
- `model_slot`: a run waiting for (`granted_at` NULL) or holding a slot of a bucket, with an
  expiry: a waiter that stops renewing, or a holder killed mid-call, leaves on its own.
- `model_pause`: a model a provider answered 429 for, paused until the time it gave.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-14 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP, UUID

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = TIMESTAMP(timezone=True)

# The claim order of a run (and of a waiter for a model slot): its due time, 10 seconds
# earlier per priority point. Declared IMMUTABLE, which it is (an interval of seconds only does
# not depend on the time zone), so that an index can hold it; being IMMUTABLE over a body
# that is not, Postgres does not inline it, and the index and the ORDER BY match.
CLAIM_RANK = """
CREATE FUNCTION agent_notify_claim_rank_v1(due_at timestamptz, priority integer)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT due_at - make_interval(secs => priority * 10) $$
"""

# Take, renew or give back a model slot of a bucket, then grant free slots to the best waiters
# (by claim rank), notifying the others that got one. Returns whether the caller's ticket holds
# a slot, and when the bucket's window has room again if it is full.
MODEL_SLOT = """
CREATE FUNCTION agent_notify_model_slot_v1(
    p_bucket text, p_ticket uuid, p_release boolean, p_tokens bigint, p_workflow_key text,
    p_owner text, p_priority integer, p_concurrency integer, p_requests_per_minute integer,
    p_tokens_per_minute bigint, p_wait_seconds double precision,
    p_hold_seconds double precision, p_channel text)
RETURNS TABLE (granted boolean, retry_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    bucket_row model_bucket;
    free bigint;
    chosen record;
    handed integer := 0;
    full_until timestamptz;
BEGIN
    INSERT INTO model_bucket (name) VALUES (p_bucket) ON CONFLICT (name) DO NOTHING;
    SELECT * INTO bucket_row FROM model_bucket WHERE name = p_bucket FOR UPDATE;
    IF bucket_row.window_started_at <= now() - interval '1 minute' THEN
        UPDATE model_bucket SET window_started_at = now(), window_requests = 0, window_tokens = 0
        WHERE name = p_bucket RETURNING * INTO bucket_row;
    END IF;
    DELETE FROM model_slot WHERE bucket = p_bucket AND expires_at < now();
    IF p_release THEN
        DELETE FROM model_slot WHERE id = p_ticket;
        IF p_tokens > 0 THEN
            UPDATE model_bucket SET window_tokens = window_tokens + p_tokens
            WHERE name = p_bucket RETURNING * INTO bucket_row;
        END IF;
    ELSE
        INSERT INTO model_slot (id, bucket, workflow_key, owner, priority, expires_at)
        VALUES (p_ticket, p_bucket, p_workflow_key, p_owner, p_priority,
                now() + make_interval(secs => p_wait_seconds))
        ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at
        WHERE model_slot.granted_at IS NULL;
    END IF;
    free := coalesce(p_concurrency, 2147483647) - (
        SELECT count(*) FROM model_slot WHERE bucket = p_bucket AND granted_at IS NOT NULL);
    IF p_requests_per_minute IS NOT NULL THEN
        free := least(free, p_requests_per_minute - bucket_row.window_requests);
    END IF;
    IF p_tokens_per_minute IS NOT NULL AND bucket_row.window_tokens >= p_tokens_per_minute THEN
        free := 0;
    END IF;
    IF free > 0 THEN
        FOR chosen IN
            UPDATE model_slot AS s
            SET granted_at = now(), expires_at = now() + make_interval(secs => p_hold_seconds)
            FROM (
                SELECT id FROM model_slot WHERE bucket = p_bucket AND granted_at IS NULL
                ORDER BY agent_notify_claim_rank_v1(requested_at, priority), id
                LIMIT free
            ) AS best
            WHERE s.id = best.id
            RETURNING s.id
        LOOP
            handed := handed + 1;
            IF chosen.id <> p_ticket THEN
                PERFORM pg_notify(p_channel, 'grant ' || chosen.id::text);
            END IF;
        END LOOP;
        IF handed > 0 THEN
            UPDATE model_bucket SET window_requests = window_requests + handed
            WHERE name = p_bucket RETURNING * INTO bucket_row;
        END IF;
    END IF;
    IF (p_requests_per_minute IS NOT NULL
            AND bucket_row.window_requests >= p_requests_per_minute)
        OR (p_tokens_per_minute IS NOT NULL AND bucket_row.window_tokens >= p_tokens_per_minute)
    THEN
        full_until := bucket_row.window_started_at + interval '1 minute';
    END IF;
    RETURN QUERY SELECT
        NOT p_release AND EXISTS (
            SELECT 1 FROM model_slot WHERE id = p_ticket AND granted_at IS NOT NULL),
        full_until;
END
$$
"""


def upgrade() -> None:
    op.add_column(
        "workflow",
        sa.Column("priority", sa.Integer, server_default=sa.text("0"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_workflow_priority_range"), "workflow", "priority BETWEEN -100 AND 100"
    )
    op.execute(CLAIM_RANK)
    op.create_index(
        "ix_workflow_claim_rank",
        "workflow",
        [sa.text("agent_notify_claim_rank_v1(next_attempt_at, priority)")],
        postgresql_where=sa.text("status IN ('pending', 'running', 'waiting')"),
    )
    op.create_table(
        "model_bucket",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("window_started_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("window_requests", sa.Integer, server_default=sa.text("0"), nullable=False),
        sa.Column("window_tokens", sa.BigInteger, server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_model_bucket")),
    )
    op.create_table(
        "model_slot",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("bucket", sa.Text, nullable=False),
        sa.Column("workflow_key", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, server_default=sa.text("0"), nullable=False),
        sa.Column("requested_at", TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("granted_at", TZ, nullable=True),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_slot")),
    )
    op.create_index("ix_model_slot_bucket", "model_slot", ["bucket"])
    op.create_table(
        "model_pause",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("paused_until", TZ, nullable=False),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_model_pause")),
    )
    op.execute(MODEL_SLOT)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION agent_notify_model_slot_v1(text, uuid, boolean, bigint, text, text, "
        "integer, integer, integer, bigint, double precision, double precision, text)"
    )
    op.drop_table("model_pause")
    op.drop_index("ix_model_slot_bucket", table_name="model_slot")
    op.drop_table("model_slot")
    op.drop_table("model_bucket")
    op.drop_index("ix_workflow_claim_rank", table_name="workflow")
    op.execute("DROP FUNCTION agent_notify_claim_rank_v1(timestamptz, integer)")
    op.drop_constraint(op.f("ck_workflow_priority_range"), "workflow", type_="check")
    op.drop_column("workflow", "priority")
