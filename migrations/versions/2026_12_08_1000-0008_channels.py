"""Subscribers on any channel: a webhook or an Apprise URL beside an email address.

A subscription gets a `channel` (`email` for every existing row: the column's default, so a
replica of the release before this one still inserts email rows through
agent_notify_subscribe_v1) and, for the other channels, a `target` (the URL) and a `secret`
(a webhook's signing key) instead of an `email`. A target is unique per promise, as an address
is, and `agent_notify_subscribe_channel_v1` registers one in the same lock order and round trip
as agent_notify_subscribe_v1 does an address.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBSCRIBE_CHANNEL = r"""
-- Register a webhook or Apprise target for a promise (created pending if absent); idempotent per
-- target (the first secret stays). Otherwise exactly agent_notify_subscribe_v1: the promise row
-- held FOR SHARE while inserting, a ready one leased to p_deliver_to when p_room > 0 (else
-- announced), an expired one coming back to life, no row at the workflow's cap.
CREATE FUNCTION agent_notify_subscribe_channel_v1(
    p_key text,
    p_promise text,
    p_channel text,
    p_target text,
    p_secret text,
    p_id uuid,
    p_message_id text,
    p_deliver_to text,
    p_room integer,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_max integer,
    p_work_channel text
) RETURNS TABLE (subscription_row jsonb, created boolean, leased boolean, promise_row jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    promised promise;
    subscribed subscription;
    new_status text;
    owner text;
BEGIN
    promised := agent_notify_lock_promise_v1(p_key, p_promise, false);
    new_status := CASE
        WHEN promised.state = 'pending' THEN 'waiting'
        WHEN promised.state = 'rejected' AND NOT p_notify_on_failure THEN 'failed'
        ELSE 'ready'
    END;
    owner := CASE WHEN new_status = 'ready' AND p_room > 0 THEN p_deliver_to END;

    INSERT INTO subscription AS s
        (id, workflow_key, promise_name, channel, target, secret, message_id, status, attempts,
         lease_owner, lease_expires_at, ready_at, last_error)
    SELECT
        p_id, p_key, p_promise, p_channel, p_target, p_secret, p_message_id, new_status,
        CASE WHEN owner IS NULL THEN 0 ELSE 1 END,
        owner,
        CASE WHEN owner IS NOT NULL THEN now() + make_interval(secs => p_lease_seconds) END,
        CASE WHEN new_status = 'ready' THEN now() END,
        CASE WHEN new_status = 'failed' THEN
            'not notified: the task failed and NOTIFY_ON_FAILURE is off' END
    WHERE (SELECT count(*) FROM subscription AS c WHERE c.workflow_key = p_key) < p_max
    ON CONFLICT (workflow_key, promise_name, target) WHERE target IS NOT NULL DO UPDATE
    SET status = excluded.status, attempts = excluded.attempts,
        lease_owner = excluded.lease_owner, lease_expires_at = excluded.lease_expires_at,
        ready_at = excluded.ready_at, last_error = excluded.last_error,
        next_attempt_at = now(), created_at = now(), updated_at = now()
    WHERE s.status = 'expired'
    RETURNING s.* INTO subscribed;

    IF NOT FOUND THEN
        SELECT * INTO subscribed FROM subscription AS s
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.target = p_target;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        RETURN QUERY SELECT to_jsonb(subscribed), false, false, to_jsonb(promised);
        RETURN;
    END IF;
    IF new_status = 'ready' AND owner IS NULL THEN
        PERFORM pg_notify(p_work_channel, 'delivery');
    END IF;
    RETURN QUERY SELECT to_jsonb(subscribed), true, owner IS NOT NULL, to_jsonb(promised);
END
$$
"""


def upgrade() -> None:
    op.add_column(
        "subscription",
        sa.Column("channel", sa.Text(), server_default=sa.text("'email'"), nullable=False),
    )
    op.add_column("subscription", sa.Column("target", sa.Text(), nullable=True))
    op.add_column("subscription", sa.Column("secret", sa.Text(), nullable=True))
    op.alter_column("subscription", "email", nullable=True)
    op.create_check_constraint(
        op.f("ck_subscription_channel"),
        "subscription",
        "channel IN ('email', 'webhook', 'apprise')",
    )
    op.create_check_constraint(
        op.f("ck_subscription_target"),
        "subscription",
        "(channel = 'email') = (email IS NOT NULL) AND (channel = 'email') = (target IS NULL)",
    )
    op.create_index(
        "ix_subscription_target",
        "subscription",
        ["workflow_key", "promise_name", "target"],
        unique=True,
        postgresql_where=sa.text("target IS NOT NULL"),
    )
    op.execute(SUBSCRIBE_CHANNEL)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION agent_notify_subscribe_channel_v1(text, text, text, text, text, uuid, "
        "text, text, integer, double precision, boolean, integer, text)"
    )
    op.execute("DELETE FROM subscription WHERE channel <> 'email'")
    op.drop_index("ix_subscription_target", table_name="subscription")
    op.drop_constraint(op.f("ck_subscription_target"), "subscription", type_="check")
    op.drop_constraint(op.f("ck_subscription_channel"), "subscription", type_="check")
    op.alter_column("subscription", "email", nullable=False)
    op.drop_column("subscription", "secret")
    op.drop_column("subscription", "target")
    op.drop_column("subscription", "channel")
