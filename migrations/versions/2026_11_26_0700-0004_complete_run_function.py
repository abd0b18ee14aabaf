"""agent_notify_complete_run(): a run's finish in one round trip.

Finishing a run was five round trips on the hot path (BEGIN, the promise, the workflow, its
subscriptions, COMMIT), each waiting its turn on a busy event loop. The same transaction, in the
same lock order (promise, workflow, subscriptions), is now one statement in autocommit.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Superseded by the versioned functions of 0006; kept while replicas of the release before
# it may still call this one.
COMPLETE_RUN = r"""
CREATE OR REPLACE FUNCTION agent_notify_complete_run(
    p_key text,
    p_created_at timestamptz,
    p_owner text,
    p_output text,
    p_error text,
    p_deliver_to text,
    p_room integer,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_promise text,
    p_key_channel text,
    p_work_channel text
) RETURNS TABLE (
    key text, query text, model text, instructions text, status text, output text, error text,
    attempts integer, lease_owner text, lease_expires_at timestamptz,
    next_attempt_at timestamptz, created_at timestamptz, updated_at timestamptz,
    started_at timestamptz, finished_at timestamptz,
    promise_state text, promise_value_json text, promise_error text,
    delivery_ids uuid[], delivery_emails text[], delivery_message_ids text[],
    delivery_attempts integer[]
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    finished workflow%ROWTYPE;
    completed promise%ROWTYPE;
    ids uuid[];
    emails text[];
    message_ids text[];
    tries integer[];
    unleased bigint;
    waiting uuid[];
    leased uuid[];
BEGIN
    -- The promise first (its row lock orders every transaction on the key), unless complete.
    INSERT INTO promise AS p (workflow_key, name, state, value, error, completed_at)
    VALUES (
        p_key, p_promise,
        CASE WHEN p_error IS NULL THEN 'resolved' ELSE 'rejected' END,
        CASE WHEN p_error IS NULL THEN to_jsonb(p_output) END,
        p_error, now()
    )
    ON CONFLICT (workflow_key, name) DO UPDATE
    SET state = excluded.state, value = excluded.value, error = excluded.error,
        completed_at = excluded.completed_at
    WHERE p.state = 'pending';

    UPDATE workflow AS w
    SET status = CASE WHEN p_error IS NULL THEN 'succeeded' ELSE 'failed' END,
        output = p_output, error = p_error, lease_owner = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE w.key = p_key AND w.created_at = p_created_at AND w.lease_owner = p_owner
      AND w.status = 'running'
    RETURNING w.* INTO finished;
    IF NOT FOUND THEN
        -- Another process holds the run now (or it was cancelled): undo the promise too.
        RAISE EXCEPTION 'the run of % is no longer leased to %', p_key, p_owner
            USING ERRCODE = 'AN409';
    END IF;
    -- Wakes the key's waiters on every replica, at commit.
    PERFORM pg_notify(p_key_channel, p_key);

    SELECT * INTO completed FROM promise AS p
    WHERE p.workflow_key = p_key AND p.name = p_promise;

    IF completed.state = 'rejected' AND NOT p_notify_on_failure THEN
        UPDATE subscription AS s
        SET status = 'failed', updated_at = now(),
            last_error = 'not notified: the task failed and NOTIFY_ON_FAILURE is off'
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.status = 'waiting';
    ELSE
        -- Ready every waiting subscriber; lease the oldest p_room of them to p_deliver_to
        -- (the caller's delivery worker, which sends them right after); leave the rest to
        -- whichever worker claims them first. (Two plain statements on the key's index: a
        -- join here gets a cached plan that scans the whole table.)
        SELECT array_agg(s.id ORDER BY s.created_at, s.id) INTO waiting
        FROM subscription AS s
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.status = 'waiting';
        leased := waiting[1:greatest(p_room, 0)];
        WITH readied AS (
            UPDATE subscription AS s
            SET status = 'ready', ready_at = now(), next_attempt_at = now(),
                updated_at = now(),
                lease_owner = CASE WHEN s.id = ANY(leased) THEN p_deliver_to END,
                lease_expires_at = CASE WHEN s.id = ANY(leased)
                    THEN now() + make_interval(secs => p_lease_seconds) END,
                attempts = s.attempts + CASE WHEN s.id = ANY(leased) THEN 1 ELSE 0 END
            WHERE s.workflow_key = p_key AND s.promise_name = p_promise
              AND s.status = 'waiting'
            RETURNING s.id, s.email, s.message_id, s.attempts, s.created_at,
                s.lease_owner IS NOT NULL AS leased
        )
        SELECT
            array_agg(readied.id ORDER BY readied.created_at, readied.id)
                FILTER (WHERE readied.leased),
            array_agg(readied.email ORDER BY readied.created_at, readied.id)
                FILTER (WHERE readied.leased),
            array_agg(readied.message_id ORDER BY readied.created_at, readied.id)
                FILTER (WHERE readied.leased),
            array_agg(readied.attempts ORDER BY readied.created_at, readied.id)
                FILTER (WHERE readied.leased),
            count(*) FILTER (WHERE NOT readied.leased)
        INTO ids, emails, message_ids, tries, unleased
        FROM readied;
        IF unleased > 0 THEN
            PERFORM pg_notify(p_work_channel, 'delivery');
        END IF;
    END IF;

    RETURN QUERY SELECT
        finished.key, finished.query, finished.model, finished.instructions, finished.status,
        finished.output, finished.error, finished.attempts, finished.lease_owner,
        finished.lease_expires_at, finished.next_attempt_at, finished.created_at,
        finished.updated_at, finished.started_at, finished.finished_at,
        completed.state, completed.value::text, completed.error,
        coalesce(ids, '{}'), coalesce(emails, '{}'), coalesce(message_ids, '{}'),
        coalesce(tries, '{}');
END
$$
"""


def upgrade() -> None:
    op.execute(COMPLETE_RUN)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION agent_notify_complete_run("
        "text, timestamptz, text, text, text, text, integer, double precision, boolean, text, "
        "text, text)"
    )
