"""A run's output schema, the completion of a structured run, and resuming a failed run.

`workflow.output_schema` (NULL: a plain-text answer) is the JSON Schema the run's final answer
must match, as the client wrote it: text, since jsonb would reorder its properties (an order
models follow when they write the answer). A plain nullable column, ignored by replicas of
earlier releases (they read rows as jsonb).

`agent_notify_complete_structured_run_v1` finishes a run whose answer is JSON: exactly as
`agent_notify_complete_run_v1` (which it calls), and in the same statement the promise's value
becomes the JSON value itself rather than its text, so no subscriber ever sees the text.

`agent_notify_resume_v1` continues a failed run from its journal, in one statement: the
workflow pending again (due now, announced to every worker; `attempts` 1, so the next claim
counts a second attempt and the run is rebuilt from its steps); the unfinished step (the one
whose model call failed) executable again with its attempts reset; the promise pending again;
and every subscriber who was told of the failure, or not told because failures are not
notified (or whose notice is still on its way, or could not be sent), waiting again under a
new Message-ID / webhook-id (`p_nonce`): the new outcome is another notification, which
receivers must not take for a re-send of the first. Unsubscribed and expired subscribers stay
as they are.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMPLETE_STRUCTURED_RUN = r"""
-- agent_notify_complete_run_v1, for a run whose answer p_output is JSON text: its promise is
-- resolved with the JSON value. Same arguments, result and AN409 as the function it calls.
CREATE FUNCTION agent_notify_complete_structured_run_v1(
    p_key text,
    p_created_at timestamptz,
    p_owner text,
    p_output text,
    p_error text,
    p_room integer,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_promise text,
    p_key_channel text,
    p_work_channel text
) RETURNS TABLE (workflow_row jsonb, promise_row jsonb, deliveries jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    finished jsonb;
    completed jsonb;
    released jsonb;
    resolved promise;
BEGIN
    SELECT c.workflow_row, c.promise_row, c.deliveries INTO finished, completed, released
    FROM agent_notify_complete_run_v1(
        p_key, p_created_at, p_owner, p_output, p_error, p_room, p_lease_seconds,
        p_notify_on_failure, p_promise, p_key_channel, p_work_channel) AS c;
    IF p_error IS NULL THEN
        -- Only the value the call above wrote (it holds the promise row's lock).
        UPDATE promise AS p SET value = CAST(p_output AS jsonb)
        WHERE p.workflow_key = p_key AND p.name = p_promise AND p.state = 'resolved'
          AND p.value = to_jsonb(p_output)
        RETURNING p.* INTO resolved;
        IF FOUND THEN
            completed := to_jsonb(resolved);
        END IF;
    END IF;
    RETURN QUERY SELECT finished, completed, released;
END
$$
"""

RESUME = r"""
-- Continue the failed run of p_key from its journal (see the module's docstring). outcome:
-- 'resumed' (with the row as it is now), 'not_failed' (with the row: nothing changed), or
-- 'unknown'. p_max_steps, when not NULL, becomes the run's max_steps.
CREATE FUNCTION agent_notify_resume_v1(
    p_key text,
    p_max_steps integer,
    p_nonce text,
    p_promise text,
    p_key_channel text,
    p_work_channel text
) RETURNS TABLE (outcome text, workflow_row jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    current workflow;
BEGIN
    SELECT * INTO current FROM workflow AS w WHERE w.key = p_key;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown', NULL::jsonb;
        RETURN;
    END IF;
    IF current.status <> 'failed' THEN
        RETURN QUERY SELECT 'not_failed', to_jsonb(current);
        RETURN;
    END IF;
    -- Lock order: the promise row, then the workflow row, then subscriptions.
    PERFORM agent_notify_lock_promise_v1(p_key, p_promise, true);
    UPDATE workflow AS w
    SET status = 'pending', output = NULL, error = NULL, attempts = 1,
        max_steps = coalesce(p_max_steps, w.max_steps), lease_owner = NULL,
        lease_expires_at = NULL, next_attempt_at = now(), finished_at = NULL, updated_at = now()
    WHERE w.key = p_key AND w.status = 'failed'
    RETURNING w.* INTO current;
    IF NOT FOUND THEN
        -- Deleted, or resumed by another call, since the read above.
        SELECT * INTO current FROM workflow AS w WHERE w.key = p_key;
        RETURN QUERY SELECT CASE WHEN FOUND THEN 'not_failed' ELSE 'unknown' END,
            to_jsonb(current);
        RETURN;
    END IF;
    -- The step without a result (its model call failed) runs again, under the same id.
    UPDATE step AS s SET attempts = 0
    WHERE s.workflow_key = p_key AND s.run_created_at = current.created_at
      AND s.output IS NULL;
    UPDATE promise AS p
    SET state = 'pending', value = NULL, error = NULL, completed_at = NULL
    WHERE p.workflow_key = p_key AND p.name = p_promise;
    UPDATE subscription AS s
    SET status = 'waiting', attempts = 0, lease_owner = NULL, lease_expires_at = NULL,
        last_error = NULL, ready_at = NULL, sent_at = NULL, outcome_unknown_at = NULL,
        -- Waiting from now: SUBSCRIPTION_TTL counts again (as for one subscribed anew).
        created_at = now(), next_attempt_at = now(), updated_at = now(),
        message_id = CASE WHEN s.channel = 'email'
            THEN '<' || s.id::text || '.' || p_nonce || '@' || split_part(s.message_id, '@', 2)
            ELSE 'msg_' || replace(s.id::text, '-', '') || '_' || p_nonce END
    WHERE s.workflow_key = p_key AND s.promise_name = p_promise
      AND s.status IN ('sent', 'failed', 'ready');
    PERFORM pg_notify(p_work_channel, 'run');
    PERFORM pg_notify(p_key_channel, p_key);
    RETURN QUERY SELECT 'resumed', to_jsonb(current);
END
$$
"""

FUNCTIONS = {
    "agent_notify_complete_structured_run_v1(text, timestamptz, text, text, text, integer, "
    "double precision, boolean, text, text, text)": COMPLETE_STRUCTURED_RUN,
    "agent_notify_resume_v1(text, integer, text, text, text, text)": RESUME,
}


def upgrade() -> None:
    op.add_column("workflow", sa.Column("output_schema", sa.Text, nullable=True))
    for body in FUNCTIONS.values():
        op.execute(body)


def downgrade() -> None:
    for signature in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION {signature}")
    op.drop_column("workflow", "output_schema")
