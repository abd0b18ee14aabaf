"""Runs that wait for a person: the `waiting` state, the run's approvers, and the rules of an
approval as versioned SQL functions; one subscribe function for every channel.

- `workflow.status` may be `waiting`: the run is suspended on an approval, with no lease. Its
  `next_attempt_at` is the approval's deadline, so the runner's claim (the claimable index now
  covers waiting rows) wakes it when the timeout passes, with no process holding it.
- `workflow.approvers` (jsonb: `[{"channel", "email" | "target", "secret"?}]`) and
  `workflow.approval_timeout_seconds`: part of the run's input. Plain nullable columns: replicas
  of the release before this one read rows as jsonb and ignore them.
- `agent_notify_request_approval_v1`: the request_approval tool's one statement. The decision
  promise `approval-<seq>` (created pending if absent), the request promise
  `approval-<seq>.request` resolved with the question, and every approver subscribed to it, so
  the delivery worker sends them the request. Past the deadline the decision is recorded as
  timed out (first writer wins: a later decision sees it).
- `agent_notify_suspend_run_v1`: the runner hands a run back as `waiting` (or as `pending`, due
  now, when a decision arrived meanwhile); the promise rows are locked first, so a decision
  either sees the run waiting or is seen by the suspension.
- `agent_notify_complete_promise_v2`: v1, and a waiting run of the key becomes `pending`, due
  now, announced to every worker.
- `agent_notify_cancel_v2`: v1, for waiting runs too.
- `agent_notify_subscribe_v2`: v1 (an email) and subscribe_channel_v1 (a webhook or Apprise
  target) in one function; the v1 functions stay for replicas of the release before this one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-14 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBSCRIBE = r"""
-- Register a subscriber of a promise (created pending if absent): an email address (p_email) or
-- a webhook or Apprise target (p_target, with a webhook's p_secret); idempotent per address or
-- target (the first secret stays). The promise row is held FOR SHARE while inserting: a
-- concurrent completion either sees this subscription (and releases it) or is seen by it (and
-- it is inserted ready). A ready one is leased to p_deliver_to when p_room > 0, else announced
-- to every worker. A subscription that expired comes back to life (same id and Message-ID:
-- nothing was ever sent for it). No row when the workflow has p_max subscriptions already.
CREATE FUNCTION agent_notify_subscribe_v2(
    p_key text,
    p_promise text,
    p_channel text,
    p_email text,
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
        (id, workflow_key, promise_name, channel, email, target, secret, message_id, status,
         attempts, lease_owner, lease_expires_at, ready_at, last_error)
    SELECT
        p_id, p_key, p_promise, p_channel, p_email, p_target, p_secret, p_message_id,
        new_status,
        CASE WHEN owner IS NULL THEN 0 ELSE 1 END,
        owner,
        CASE WHEN owner IS NOT NULL THEN now() + make_interval(secs => p_lease_seconds) END,
        CASE WHEN new_status = 'ready' THEN now() END,
        CASE WHEN new_status = 'failed' THEN
            'not notified: the task failed and NOTIFY_ON_FAILURE is off' END
    WHERE (SELECT count(*) FROM subscription AS c WHERE c.workflow_key = p_key) < p_max
    ON CONFLICT DO NOTHING
    RETURNING s.* INTO subscribed;

    IF NOT FOUND THEN
        -- Subscribed before (or at the cap): an expired one comes back to life.
        UPDATE subscription AS s
        SET status = new_status, attempts = CASE WHEN owner IS NULL THEN 0 ELSE 1 END,
            lease_owner = owner,
            lease_expires_at = CASE WHEN owner IS NOT NULL
                THEN now() + make_interval(secs => p_lease_seconds) END,
            ready_at = CASE WHEN new_status = 'ready' THEN now() END,
            last_error = CASE WHEN new_status = 'failed' THEN
                'not notified: the task failed and NOTIFY_ON_FAILURE is off' END,
            next_attempt_at = now(), created_at = now(), updated_at = now()
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.status = 'expired'
          AND (s.email = p_email OR s.target = p_target)
        RETURNING s.* INTO subscribed;
    END IF;
    IF NOT FOUND THEN
        SELECT * INTO subscribed FROM subscription AS s
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise
          AND (s.email = p_email OR s.target = p_target);
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

COMPLETE_PROMISE = r"""
-- agent_notify_complete_promise_v1, and a run of the key waiting on an approval becomes
-- runnable: `pending`, due now, announced to every worker (it finds its decision in the
-- promise, or waits again).
CREATE FUNCTION agent_notify_complete_promise_v2(
    p_key text,
    p_name text,
    p_value jsonb,
    p_error text,
    p_deliver_to text,
    p_room integer,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_key_channel text,
    p_work_channel text
) RETURNS TABLE (promise_row jsonb, changed boolean, deliveries jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    current promise;
BEGIN
    PERFORM 1 FROM workflow AS w WHERE w.key = p_key;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    current := agent_notify_lock_promise_v1(p_key, p_name, true);
    PERFORM 1 FROM workflow AS w WHERE w.key = p_key FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no workflow %', p_key USING ERRCODE = 'AN404';
    END IF;
    IF current.state <> 'pending' THEN
        RETURN QUERY SELECT to_jsonb(current), false, '[]'::jsonb;
        RETURN;
    END IF;
    UPDATE promise AS p
    SET state = CASE WHEN p_error IS NULL THEN 'resolved' ELSE 'rejected' END,
        value = CASE WHEN p_error IS NULL THEN coalesce(p_value, 'null'::jsonb) END,
        error = p_error, completed_at = now()
    WHERE p.workflow_key = p_key AND p.name = p_name
    RETURNING p.* INTO current;
    UPDATE workflow AS w
    SET status = 'pending', next_attempt_at = now(), updated_at = now()
    WHERE w.key = p_key AND w.status = 'waiting';
    IF FOUND THEN
        PERFORM pg_notify(p_work_channel, 'run');
    END IF;
    PERFORM pg_notify(p_key_channel, p_key);
    RETURN QUERY SELECT
        to_jsonb(current), true,
        agent_notify_release_waiting_v1(
            p_key, p_name, p_error IS NOT NULL, p_deliver_to, p_room, p_lease_seconds,
            p_notify_on_failure, p_work_channel);
END
$$
"""

CANCEL = r"""
-- agent_notify_cancel_v1, for a run waiting on an approval too.
CREATE FUNCTION agent_notify_cancel_v2(
    p_key text,
    p_reason text,
    p_deliver_to text,
    p_room integer,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_promise text,
    p_key_channel text,
    p_work_channel text
) RETURNS TABLE (workflow_row jsonb, cancelled boolean, promise_row jsonb, deliveries jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    current workflow;
    rejected promise;
BEGIN
    SELECT * INTO current FROM workflow AS w WHERE w.key = p_key;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF current.status NOT IN ('pending', 'running', 'waiting') THEN
        RETURN QUERY SELECT to_jsonb(current), false, NULL::jsonb, '[]'::jsonb;
        RETURN;
    END IF;
    PERFORM agent_notify_lock_promise_v1(p_key, p_promise, true);
    UPDATE workflow AS w
    SET status = 'cancelled', error = p_reason, lease_owner = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE w.key = p_key AND w.status IN ('pending', 'running', 'waiting')
    RETURNING w.* INTO current;
    IF NOT FOUND THEN
        SELECT * INTO current FROM workflow AS w WHERE w.key = p_key;
        RETURN QUERY SELECT to_jsonb(current), false, NULL::jsonb, '[]'::jsonb;
        RETURN;
    END IF;
    UPDATE promise AS p
    SET state = 'rejected', value = NULL, error = p_reason, completed_at = now()
    WHERE p.workflow_key = p_key AND p.name = p_promise AND p.state = 'pending'
    RETURNING p.* INTO rejected;
    IF NOT FOUND THEN
        SELECT * INTO rejected FROM promise AS p
        WHERE p.workflow_key = p_key AND p.name = p_promise;
    END IF;
    PERFORM pg_notify(p_key_channel, p_key);
    RETURN QUERY SELECT
        to_jsonb(current), true, to_jsonb(rejected),
        agent_notify_release_waiting_v1(
            p_key, p_promise, rejected.state = 'rejected', p_deliver_to, p_room, p_lease_seconds,
            p_notify_on_failure, p_work_channel);
END
$$
"""

REQUEST_APPROVAL = r"""
-- The request_approval call (its step p_step_id) of a leased run (p_owner holds it, else AN409
-- and nothing changed): its decision promise `approval-<the step's seq>`, created pending if
-- absent. Still pending and within the
-- deadline (the promise's created_at + p_timeout_seconds): the request promise
-- `<p_promise>.request` is resolved with p_request (and the deadline), once, and each of
-- p_approvers (`[{"channel", "email", "target", "secret", "id", "message_id"}]`) subscribed to
-- it, ready to be sent. Past the deadline: the decision is recorded as timed out. Returns the
-- decision promise and the deadline.
CREATE FUNCTION agent_notify_request_approval_v1(
    p_key text,
    p_created_at timestamptz,
    p_owner text,
    p_step_id uuid,
    p_request jsonb,
    p_approvers jsonb,
    p_timeout_seconds double precision,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_max integer,
    p_key_channel text,
    p_work_channel text
) RETURNS TABLE (promise_row jsonb, deadline timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    decision promise;
    request promise;
    due timestamptz;
    approver jsonb;
    p_promise text;
BEGIN
    SELECT 'approval-' || s.seq INTO p_promise FROM step AS s
    WHERE s.id = p_step_id AND s.workflow_key = p_key AND s.run_created_at = p_created_at;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the run of % has no step %', p_key, p_step_id USING ERRCODE = 'AN409';
    END IF;
    decision := agent_notify_lock_promise_v1(p_key, p_promise, true);
    PERFORM 1 FROM workflow AS w
    WHERE w.key = p_key AND w.created_at = p_created_at AND w.lease_owner = p_owner
      AND w.status = 'running'
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the run of % is no longer leased to %', p_key, p_owner
            USING ERRCODE = 'AN409';
    END IF;
    due := decision.created_at + make_interval(secs => p_timeout_seconds);
    IF decision.state = 'pending' AND due <= now() THEN
        UPDATE promise AS p
        SET state = 'resolved', completed_at = now(),
            value = jsonb_build_object(
                'approved', false, 'timed_out', true, 'comment', NULL, 'by', NULL)
        WHERE p.workflow_key = p_key AND p.name = p_promise
        RETURNING p.* INTO decision;
        PERFORM agent_notify_release_waiting_v1(
            p_key, p_promise, false, NULL, 0, p_lease_seconds, p_notify_on_failure,
            p_work_channel);
        PERFORM pg_notify(p_key_channel, p_key);
    END IF;
    IF decision.state <> 'pending' THEN
        RETURN QUERY SELECT to_jsonb(decision), due;
        RETURN;
    END IF;
    request := agent_notify_lock_promise_v1(p_key, p_promise || '.request', true);
    IF request.state = 'pending' THEN
        UPDATE promise AS p
        SET state = 'resolved', completed_at = now(),
            value = p_request || jsonb_build_object('deadline', due, 'decision', p_promise)
        WHERE p.workflow_key = p_key AND p.name = request.name;
        PERFORM agent_notify_release_waiting_v1(
            p_key, request.name, false, NULL, 0, p_lease_seconds, p_notify_on_failure,
            p_work_channel);
        FOR approver IN SELECT * FROM jsonb_array_elements(p_approvers) LOOP
            PERFORM agent_notify_subscribe_v2(
                p_key, request.name, approver->>'channel', approver->>'email',
                approver->>'target', approver->>'secret', (approver->>'id')::uuid,
                approver->>'message_id', NULL, 0, p_lease_seconds, p_notify_on_failure, p_max,
                p_work_channel);
        END LOOP;
        PERFORM pg_notify(p_key_channel, p_key);
    END IF;
    RETURN QUERY SELECT to_jsonb(decision), due;
END
$$
"""

SUSPEND_RUN = r"""
-- Hand a leased run back to wait for the decisions p_promises (p_owner holds it, else AN409
-- and nothing changed): `waiting`, due at p_wake_at (the earliest deadline), or, when one of
-- them is decided already, `pending` and due now. The promise rows are locked first (the lock
-- order), so a decision committing meanwhile either finds the run waiting (and wakes it) or is
-- found here. Its attempts start again at 1: each wake-up is a new attempt of the run, and a
-- run may wait many times. Returns the row and whether it waits.
CREATE FUNCTION agent_notify_suspend_run_v1(
    p_key text,
    p_created_at timestamptz,
    p_owner text,
    p_promises text[],
    p_wake_at timestamptz,
    p_key_channel text,
    p_work_channel text
) RETURNS TABLE (workflow_row jsonb, waiting boolean)
LANGUAGE plpgsql AS $$
DECLARE
    name text;
    locked promise;
    decided boolean := false;
    suspended workflow;
BEGIN
    FOR name IN SELECT DISTINCT n FROM unnest(p_promises) AS n ORDER BY n LOOP
        locked := agent_notify_lock_promise_v1(p_key, name, false);
        IF locked.state <> 'pending' THEN
            decided := true;
        END IF;
    END LOOP;
    UPDATE workflow AS w
    SET status = CASE WHEN decided THEN 'pending' ELSE 'waiting' END,
        next_attempt_at = CASE WHEN decided THEN now() ELSE p_wake_at END,
        lease_owner = NULL, lease_expires_at = NULL, attempts = 1, updated_at = now()
    WHERE w.key = p_key AND w.created_at = p_created_at AND w.lease_owner = p_owner
      AND w.status = 'running'
    RETURNING w.* INTO suspended;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the run of % is no longer leased to %', p_key, p_owner
            USING ERRCODE = 'AN409';
    END IF;
    IF decided THEN
        PERFORM pg_notify(p_work_channel, 'run');
    END IF;
    PERFORM pg_notify(p_key_channel, p_key);
    RETURN QUERY SELECT to_jsonb(suspended), NOT decided;
END
$$
"""

FUNCTIONS = {
    "agent_notify_subscribe_v2(text, text, text, text, text, text, uuid, text, text, integer, "
    "double precision, boolean, integer, text)": SUBSCRIBE,
    "agent_notify_complete_promise_v2(text, text, jsonb, text, text, integer, "
    "double precision, boolean, text, text)": COMPLETE_PROMISE,
    "agent_notify_cancel_v2(text, text, text, integer, double precision, boolean, text, text, "
    "text)": CANCEL,
    "agent_notify_request_approval_v1(text, timestamptz, text, uuid, jsonb, jsonb, "
    "double precision, double precision, boolean, integer, text, text)": REQUEST_APPROVAL,
    "agent_notify_suspend_run_v1(text, timestamptz, text, text[], timestamptz, text, text)": (
        SUSPEND_RUN
    ),
}

STATES = "'pending', 'running', 'succeeded', 'failed', 'cancelled'"


def upgrade() -> None:
    op.add_column("workflow", sa.Column("approvers", JSONB, nullable=True))
    op.add_column("workflow", sa.Column("approval_timeout_seconds", sa.Double(), nullable=True))
    op.drop_constraint(op.f("ck_workflow_status"), "workflow", type_="check")
    op.create_check_constraint(
        op.f("ck_workflow_status"), "workflow", f"status IN ({STATES}, 'waiting')"
    )
    # The runner's claim also wakes waiting runs whose deadline has come.
    op.drop_index("ix_workflow_claimable", table_name="workflow")
    op.create_index(
        "ix_workflow_claimable",
        "workflow",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'running', 'waiting')"),
    )
    for body in FUNCTIONS.values():
        op.execute(body)


def downgrade() -> None:
    for signature in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION {signature}")
    # Waiting runs go back to pending: the release before this one claims them again.
    op.execute("UPDATE workflow SET status = 'pending' WHERE status = 'waiting'")
    op.drop_index("ix_workflow_claimable", table_name="workflow")
    op.create_index(
        "ix_workflow_claimable",
        "workflow",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.drop_constraint(op.f("ck_workflow_status"), "workflow", type_="check")
    op.create_check_constraint(op.f("ck_workflow_status"), "workflow", f"status IN ({STATES})")
    op.drop_column("workflow", "approval_timeout_seconds")
    op.drop_column("workflow", "approvers")
