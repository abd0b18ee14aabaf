"""Every rule that spans rows as one versioned SQL function, written once.

`agent_notify_release_waiting_v1` is the one rule "a promise completed: its waiting subscribers
become ready, the oldest `room` of them leased to the caller, the rest announced to every
worker". Completing a run, cancelling a workflow and completing a promise from outside all call
it. Subscribing, deleting a workflow and the retention purge are functions too, so every state
change the service makes is one statement.

Functions carry a version in their name: a change is a new `_v2` in a new migration, and the
`_v1` stays until no replica of an older release can call it, so a rolling deploy can run old
and new replicas against one schema. (0004's and 0005's unversioned functions are still called
by replicas of the release before this one; a later migration drops them.)

Lock order, in every function: the promise row, then the workflow row, then subscriptions.
Functions return rows as jsonb (`to_jsonb(row)`): a column added by a later migration reaches
the callers that know it and is ignored by the others, with no new function version and nothing
for a client's cached statements or type codecs to trip over.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCK_PROMISE = r"""
-- The promise row, created pending if absent, locked FOR UPDATE (or FOR SHARE): the lock that
-- orders every transaction on a key. A concurrent delete between the two statements (a DELETE,
-- retention) removes the row: create it again.
CREATE FUNCTION agent_notify_lock_promise_v1(p_key text, p_name text, p_exclusive boolean)
RETURNS promise
LANGUAGE plpgsql AS $$
DECLARE
    locked promise;
BEGIN
    LOOP
        INSERT INTO promise (workflow_key, name, state) VALUES (p_key, p_name, 'pending')
        ON CONFLICT (workflow_key, name) DO NOTHING;
        IF p_exclusive THEN
            SELECT * INTO locked FROM promise AS p
            WHERE p.workflow_key = p_key AND p.name = p_name FOR UPDATE;
        ELSE
            SELECT * INTO locked FROM promise AS p
            WHERE p.workflow_key = p_key AND p.name = p_name FOR SHARE;
        END IF;
        IF FOUND THEN
            RETURN locked;
        END IF;
    END LOOP;
END
$$
"""

RELEASE_WAITING = r"""
-- A promise completed (the caller holds its row lock): its waiting subscribers become ready.
-- The oldest p_room of them are leased to p_deliver_to, whose delivery worker reserved the room
-- and sends them right after the commit; the rest are announced to every worker. When the
-- promise was rejected and failures are not notified, they fail instead, with the reason.
-- Returns the leased subscriptions, oldest first, as a jsonb array of rows.
CREATE FUNCTION agent_notify_release_waiting_v1(
    p_key text,
    p_promise text,
    p_rejected boolean,
    p_deliver_to text,
    p_room integer,
    p_lease_seconds double precision,
    p_notify_on_failure boolean,
    p_work_channel text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    waiting uuid[];
    leased uuid[];
    readied jsonb;
BEGIN
    IF p_rejected AND NOT p_notify_on_failure THEN
        UPDATE subscription AS s
        SET status = 'failed', updated_at = now(),
            last_error = 'not notified: the task failed and NOTIFY_ON_FAILURE is off'
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.status = 'waiting';
        RETURN '[]';
    END IF;
    -- Two plain statements on the key's index: a join here gets a cached plan that scans the
    -- whole table.
    SELECT array_agg(s.id ORDER BY s.created_at, s.id) INTO waiting
    FROM subscription AS s
    WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.status = 'waiting';
    IF waiting IS NULL THEN
        RETURN '[]';
    END IF;
    leased := waiting[1:greatest(p_room, 0)];
    IF cardinality(waiting) > cardinality(leased) THEN
        PERFORM pg_notify(p_work_channel, 'delivery');
    END IF;
    WITH released AS (
        UPDATE subscription AS s
        SET status = 'ready', ready_at = now(), next_attempt_at = now(), updated_at = now(),
            lease_owner = CASE WHEN s.id = ANY(leased) THEN p_deliver_to END,
            lease_expires_at = CASE WHEN s.id = ANY(leased)
                THEN now() + make_interval(secs => p_lease_seconds) END,
            attempts = s.attempts + CASE WHEN s.id = ANY(leased) THEN 1 ELSE 0 END
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.status = 'waiting'
        RETURNING s.*
    )
    SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.created_at, r.id), '[]') INTO readied
    FROM released AS r WHERE r.lease_owner IS NOT NULL;
    RETURN readied;
END
$$
"""

COMPLETE_RUN = r"""
-- Finish a leased run: record its outcome (p_output, or p_error for a terminal failure),
-- complete its promise, release the promise's waiting subscribers and NOTIFY the key.
-- p_created_at names the run: a run of a key since deleted and started again cannot finish
-- the new one. Raises AN409 when p_owner no longer holds the run (taken over, or cancelled):
-- then nothing changed.
CREATE FUNCTION agent_notify_complete_run_v1(
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
    UPDATE promise AS p
    SET state = CASE WHEN p_error IS NULL THEN 'resolved' ELSE 'rejected' END,
        value = CASE WHEN p_error IS NULL THEN to_jsonb(p_output) END,
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

COMPLETE_PROMISE = r"""
-- Resolve (p_error NULL: the value p_value) or reject a promise from outside, creating it if
-- absent; first writer wins. Its waiting subscribers are released exactly as when a run
-- completes its promise. `changed` is false when it was already complete (nothing changed);
-- no row when the key has no workflow.
CREATE FUNCTION agent_notify_complete_promise_v1(
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
    -- Deleted since the check above (its promise rows were locked first): undo the insert.
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
-- Cancel a pending or running workflow: its promise is rejected as p_reason, its waiting
-- subscribers released to be told, the key NOTIFYed; whoever runs it sees its lease gone.
-- `cancelled` is false (and nothing changed) when it had finished; no row when there is none.
CREATE FUNCTION agent_notify_cancel_v1(
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
    IF current.status NOT IN ('pending', 'running') THEN
        RETURN QUERY SELECT to_jsonb(current), false, NULL::jsonb, '[]'::jsonb;
        RETURN;
    END IF;
    PERFORM agent_notify_lock_promise_v1(p_key, p_promise, true);
    UPDATE workflow AS w
    SET status = 'cancelled', error = p_reason, lease_owner = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE w.key = p_key AND w.status IN ('pending', 'running')
    RETURNING w.* INTO current;
    IF NOT FOUND THEN
        -- It finished meanwhile (its run held the promise lock first).
        SELECT * INTO current FROM workflow AS w WHERE w.key = p_key;
        RETURN QUERY SELECT to_jsonb(current), false, NULL::jsonb, '[]'::jsonb;
        RETURN;
    END IF;
    UPDATE promise AS p
    SET state = 'rejected', value = NULL, error = p_reason, completed_at = now()
    WHERE p.workflow_key = p_key AND p.name = p_promise AND p.state = 'pending'
    RETURNING p.* INTO rejected;
    IF NOT FOUND THEN
        -- Completed already (a run completes its promise and its workflow in one statement,
        -- so only by hand): its subscribers were released then.
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

SUBSCRIBE = r"""
-- Register p_email for a promise (created pending if absent); idempotent per address. The
-- promise row is held FOR SHARE while inserting: a concurrent completion either sees this
-- subscription (and releases it) or is seen by it (and it is inserted ready). A ready one is
-- leased to p_deliver_to when p_room > 0, else announced to every worker. A subscription that
-- expired comes back to life (same id and Message-ID: nothing was ever sent for it). No row
-- when the workflow has p_max subscriptions already (concurrent subscribers may overshoot it by
-- a few).
CREATE FUNCTION agent_notify_subscribe_v1(
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
        SELECT * INTO subscribed FROM subscription AS s
        WHERE s.workflow_key = p_key AND s.promise_name = p_promise AND s.email = p_email;
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

DELETE_WORKFLOW = r"""
-- Delete a finished workflow with its promises and subscriptions, so the key can be used
-- again. outcome: 'deleted' (with the row), 'busy' (not finished, or a notification still on
-- its way: nothing deleted), or 'unknown'.
CREATE FUNCTION agent_notify_delete_workflow_v1(p_key text, p_key_channel text)
RETURNS TABLE (outcome text, workflow_row jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    gone workflow;
    locked text[];
BEGIN
    -- Promise rows first, as everywhere: a subscriber waiting on one is not lost to the
    -- cascade, and the checks below see every subscription committed before.
    SELECT array_agg(p.name) INTO locked FROM (
        SELECT p.name FROM promise AS p WHERE p.workflow_key = p_key FOR UPDATE
    ) AS p;
    DELETE FROM workflow AS w
    WHERE w.key = p_key AND w.status IN ('succeeded', 'failed', 'cancelled')
      AND NOT EXISTS (
          SELECT 1 FROM subscription AS s
          WHERE s.workflow_key = p_key AND s.status IN ('waiting', 'ready')
      )
    RETURNING w.* INTO gone;
    IF NOT FOUND THEN
        PERFORM 1 FROM workflow AS w WHERE w.key = p_key;
        RETURN QUERY SELECT CASE WHEN FOUND THEN 'busy' ELSE 'unknown' END, NULL::jsonb;
        RETURN;
    END IF;
    -- Subscriptions go with their promise (ON DELETE CASCADE). Only the promises locked above:
    -- one created meanwhile stays, with its subscriber, for the key's next run.
    DELETE FROM promise AS p WHERE p.workflow_key = p_key AND p.name = ANY(locked);
    PERFORM pg_notify(p_key_channel, p_key);
    RETURN QUERY SELECT 'deleted', to_jsonb(gone);
END
$$
"""

PURGE = r"""
-- Retention: delete up to p_limit workflows finished longer ago than p_retention_seconds (with
-- their promises and subscriptions), and promises no run ever completed whose key has no
-- workflow; keys with a notification still on its way, or rows locked elsewhere, wait for the
-- next sweep. Returns how many keys went.
CREATE FUNCTION agent_notify_purge_v1(p_retention_seconds double precision, p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    keys text[];
    locked_keys text[];
    locked_names text[];
    busy text[];
    doomed text[];
BEGIN
    SELECT array_agg(DISTINCT k) INTO keys FROM (
        (SELECT w.key AS k FROM workflow AS w
         WHERE w.status IN ('succeeded', 'failed', 'cancelled')
           AND w.finished_at < now() - make_interval(secs => p_retention_seconds)
         ORDER BY w.finished_at LIMIT p_limit)
        UNION
        (SELECT DISTINCT p.workflow_key FROM promise AS p
         WHERE p.created_at < now() - make_interval(secs => p_retention_seconds)
           AND NOT EXISTS (SELECT 1 FROM workflow AS w WHERE w.key = p.workflow_key)
         LIMIT p_limit)
    ) AS candidates;
    IF keys IS NULL THEN
        RETURN 0;
    END IF;
    -- Promise rows first, as everywhere; rows busy elsewhere wait for the next sweep.
    SELECT array_agg(p.workflow_key), array_agg(p.name) INTO locked_keys, locked_names
    FROM (
        SELECT p.workflow_key, p.name FROM promise AS p WHERE p.workflow_key = ANY(keys)
        FOR UPDATE SKIP LOCKED
    ) AS p;
    SELECT array_agg(DISTINCT k) INTO busy FROM (
        SELECT p.workflow_key AS k FROM promise AS p
        WHERE p.workflow_key = ANY(keys)
          AND (p.workflow_key, p.name) NOT IN (
              SELECT * FROM unnest(coalesce(locked_keys, '{}'), coalesce(locked_names, '{}')))
        UNION
        SELECT s.workflow_key FROM subscription AS s
        WHERE s.workflow_key = ANY(keys) AND s.status IN ('waiting', 'ready')
    ) AS b;
    SELECT array_agg(k) INTO doomed FROM unnest(keys) AS k
    WHERE NOT k = ANY(coalesce(busy, '{}'));
    IF doomed IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM workflow AS w
    WHERE w.key = ANY(doomed) AND w.status IN ('succeeded', 'failed', 'cancelled');
    -- Only the promise rows locked here: one created meanwhile stays (and its subscriber).
    DELETE FROM promise AS p
    WHERE p.workflow_key = ANY(doomed) AND (p.workflow_key, p.name) IN (
        SELECT * FROM unnest(coalesce(locked_keys, '{}'), coalesce(locked_names, '{}')));
    RETURN cardinality(doomed);
END
$$
"""

FUNCTIONS = {
    "agent_notify_lock_promise_v1(text, text, boolean)": LOCK_PROMISE,
    "agent_notify_release_waiting_v1(text, text, boolean, text, integer, double precision, "
    "boolean, text)": RELEASE_WAITING,
    "agent_notify_complete_run_v1(text, timestamptz, text, text, text, integer, "
    "double precision, boolean, text, text, text)": COMPLETE_RUN,
    "agent_notify_complete_promise_v1(text, text, jsonb, text, text, integer, "
    "double precision, boolean, text, text)": COMPLETE_PROMISE,
    "agent_notify_cancel_v1(text, text, text, integer, double precision, boolean, text, text, "
    "text)": CANCEL,
    "agent_notify_subscribe_v1(text, text, text, uuid, text, text, integer, double precision, "
    "boolean, integer, text)": SUBSCRIBE,
    "agent_notify_delete_workflow_v1(text, text)": DELETE_WORKFLOW,
    "agent_notify_purge_v1(double precision, integer)": PURGE,
}


def upgrade() -> None:
    for body in FUNCTIONS.values():
        op.execute(body)


def downgrade() -> None:
    for signature in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION {signature}")
