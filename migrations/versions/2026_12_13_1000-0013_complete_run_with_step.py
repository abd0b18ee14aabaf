"""A run's completion records its answer's model turn too: `agent_notify_complete_run_v2`.

The model turn that answers (no tool calls) is journaled in the transaction that completes the
run, not in a statement of its own: a one-turn run commits what it did before the journal
(accept, complete). `p_step` is the turn as jsonb (`id`, `seq`, `kind`, `name`, `input`,
`output`, `input_tokens`, `output_tokens`, `cost_usd`, `started_at`; NULL: no step to record):
the row begun for it is finished, or — the first model turn, which no statement begins (the run's
claim marks it started) — inserted with the run's attempts as its own. Fenced as v1 is: the run
of (p_key, p_created_at) leased to p_owner and running, else AN409 and nothing changed.

With `p_structured` (a run with an output_schema) the promise's value is the JSON value of
`p_output`, as `agent_notify_complete_structured_run_v1` (0011) makes it: one function for both.

`agent_notify_complete_run_v1` and `agent_notify_complete_structured_run_v1` stay: a replica of
the release before this one calls them during a rolling deploy (its steps are journaled by
statements of their own). A later migration drops them once no such replica can be running.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-13 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMPLETE_RUN = r"""
CREATE FUNCTION agent_notify_complete_run_v2(
    p_key text,
    p_created_at timestamptz,
    p_owner text,
    p_output text,
    p_error text,
    p_step jsonb,
    p_structured boolean,
    p_room integer,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_promise text,
    p_key_channel text,
    p_work_channel text
) RETURNS TABLE (workflow_row jsonb, promise_row jsonb, deliveries jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    done workflow;
    completed promise;
BEGIN
    PERFORM agent_notify_lock_promise_v1(p_key, p_promise, true);
    UPDATE workflow AS w
    SET status = CASE WHEN p_error IS NULL THEN 'succeeded' ELSE 'failed' END,
        output = p_output, error = p_error, lease_owner = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE w.key = p_key AND w.created_at = p_created_at AND w.lease_owner = p_owner
      AND w.status = 'running'
    RETURNING w.* INTO done;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the run of % is no longer leased to %', p_key, p_owner
            USING ERRCODE = 'AN409';
    END IF;
    IF p_step IS NOT NULL THEN
        -- The same result again (a retry after a lost reply) is recorded again; a step that
        -- has another result already keeps it.
        INSERT INTO step AS s
            (id, workflow_key, run_created_at, seq, kind, name, input, output, status, attempts,
             input_tokens, output_tokens, cost_usd, started_at, finished_at)
        VALUES (
            (p_step->>'id')::uuid, p_key, p_created_at, (p_step->>'seq')::integer,
            p_step->>'kind', p_step->>'name', p_step->'input', p_step->'output', 'succeeded',
            done.attempts, (p_step->>'input_tokens')::integer,
            (p_step->>'output_tokens')::integer, (p_step->>'cost_usd')::double precision,
            least(coalesce((p_step->>'started_at')::timestamptz, now()), now()), now())
        ON CONFLICT (workflow_key, run_created_at, seq) DO UPDATE
        SET status = 'succeeded', output = excluded.output, error = NULL,
            input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
            cost_usd = excluded.cost_usd, finished_at = now()
        WHERE s.output IS NULL OR s.output = excluded.output;
    END IF;
    UPDATE promise AS p
    SET state = CASE WHEN p_error IS NULL THEN 'resolved' ELSE 'rejected' END,
        value = CASE WHEN p_error IS NULL THEN
            CASE WHEN p_structured THEN CAST(p_output AS jsonb) ELSE to_jsonb(p_output) END END,
        error = p_error, completed_at = now()
    WHERE p.workflow_key = p_key AND p.name = p_promise AND p.state = 'pending'
    RETURNING p.* INTO completed;
    IF NOT FOUND THEN
        SELECT * INTO completed FROM promise AS p
        WHERE p.workflow_key = p_key AND p.name = p_promise;
    END IF;
    PERFORM pg_notify(p_key_channel, p_key);
    RETURN QUERY SELECT
        to_jsonb(done), to_jsonb(completed),
        agent_notify_release_waiting_v1(
            p_key, p_promise, completed.state = 'rejected', p_owner, p_room, p_lease_seconds,
            p_notify_on_failure, p_work_channel);
END
$$
"""

SIGNATURE = (
    "agent_notify_complete_run_v2(text, timestamptz, text, text, text, jsonb, boolean, integer, "
    "double precision, boolean, text, text, text)"
)


def upgrade() -> None:
    op.execute(COMPLETE_RUN)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
