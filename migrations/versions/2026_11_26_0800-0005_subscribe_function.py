"""agent_notify_subscribe(): a subscription in one round trip.

Subscribing was five round trips (BEGIN, create the promise if absent, lock it FOR SHARE,
insert the subscription, COMMIT). The same transaction, in the same lock order, is now one
statement in autocommit.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 08:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Superseded by the versioned functions of 0006; kept while replicas of the release before
# it may still call this one.
SUBSCRIBE = r"""
CREATE OR REPLACE FUNCTION agent_notify_subscribe(
    p_key text,
    p_promise text,
    p_email text,
    p_id uuid,
    p_message_id text,
    p_deliver_to text,
    p_room integer,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_max integer,
    p_work_channel text
) RETURNS TABLE (
    id uuid, workflow_key text, promise_name text, email text, status text, message_id text,
    attempts integer, last_error text, lease_owner text, lease_expires_at timestamptz,
    next_attempt_at timestamptz, created_at timestamptz, updated_at timestamptz,
    ready_at timestamptz, sent_at timestamptz,
    created boolean, leased boolean,
    promise_state text, promise_value_json text, promise_error text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    promised promise%ROWTYPE;
    subscribed subscription%ROWTYPE;
    new_status text;
    owner text;
    made boolean := true;
BEGIN
    -- The promise, created pending if absent, held FOR SHARE while inserting: a concurrent
    -- completion either sees this subscription (and readies it) or is seen by it (and it is
    -- inserted ready). A concurrent delete between the two statements: create it again.
    LOOP
        INSERT INTO promise (workflow_key, name, state) VALUES (p_key, p_promise, 'pending')
        ON CONFLICT (workflow_key, name) DO NOTHING;
        SELECT * INTO promised FROM promise AS p
        WHERE p.workflow_key = p_key AND p.name = p_promise
        FOR SHARE;
        EXIT WHEN FOUND;
    END LOOP;

    new_status := CASE
        WHEN promised.state = 'pending' THEN 'waiting'
        WHEN promised.state = 'rejected' AND NOT p_notify_on_failure THEN 'failed'
        ELSE 'ready'
    END;
    owner := CASE WHEN new_status = 'ready' AND p_room > 0 THEN p_deliver_to END;

    -- A new subscription, or one that expired coming back to life (same id and Message-ID:
    -- nothing was ever sent for it); any other existing one is left alone. The cap is checked
    -- in the same statement; concurrent subscribers of one workflow may overshoot it by a few.
    INSERT INTO subscription AS s
        (id, workflow_key, promise_name, email, message_id, status, attempts, lease_owner,
         lease_expires_at, ready_at, last_error)
    SELECT
        p_id, p_key, p_promise, p_email, p_message_id, new_status,
        CASE WHEN owner IS NULL THEN 0 ELSE 1 END,
        owner,
        CASE WHEN owner IS NOT NULL THEN now() + make_interval(secs => p_lease_seconds) END,
        CASE WHEN new_status = 'ready' THEN now() END,
        CASE WHEN new_status = 'failed' THEN
            'not notified: the task failed and NOTIFY_ON_FAILURE is off' END
    WHERE (SELECT count(*) FROM subscription AS c WHERE c.workflow_key = p_key) < p_max
    ON CONFLICT (workflow_key, promise_name, email) DO UPDATE
    SET status = excluded.status, attempts = excluded.attempts,
        lease_owner = excluded.lease_owner, lease_expires_at = excluded.lease_expires_at,
        ready_at = excluded.ready_at, last_error = excluded.last_error,
        next_attempt_at = now(), created_at = now(), updated_at = now()
    WHERE s.status = 'expired'
    RETURNING s.* INTO subscribed;

    IF NOT FOUND THEN
        made := false;
        owner := NULL;
        SELECT * INTO subscribed FROM subscription AS s
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.email = p_email;
        IF NOT FOUND THEN
            RETURN;  -- no row: the workflow has p_max subscriptions already
        END IF;
    ELSIF new_status = 'ready' AND owner IS NULL THEN
        PERFORM pg_notify(p_work_channel, 'delivery');
    END IF;

    RETURN QUERY SELECT
        subscribed.id, subscribed.workflow_key, subscribed.promise_name, subscribed.email,
        subscribed.status, subscribed.message_id, subscribed.attempts, subscribed.last_error,
        subscribed.lease_owner, subscribed.lease_expires_at, subscribed.next_attempt_at,
        subscribed.created_at, subscribed.updated_at, subscribed.ready_at, subscribed.sent_at,
        made, owner IS NOT NULL,
        promised.state, promised.value::text, promised.error;
END
$$
"""


def upgrade() -> None:
    op.execute(SUBSCRIBE)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION agent_notify_subscribe("
        "text, text, text, uuid, text, text, integer, double precision, boolean, integer, text)"
    )
