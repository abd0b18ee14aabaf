-- Every statement the service runs, each under a `-- name: …` line; app/db/gateway.py loads
-- them and is the only code that executes SQL. Parameters are `:name` (SQLAlchemy's text()).
-- A statement is its own transaction unless run inside Database.transaction().
-- A table's row travels as jsonb (`to_jsonb(row)`, read by app/db/rows.py): a column a later
-- migration adds is ignored by code that does not know it, and changes no statement's result
-- type under a running replica's cached statements.
-- Rules that span rows are versioned SQL functions (migrations/versions/*-0006_*): the
-- statements here call them.
-- Lock order, everywhere: the promise row, then the workflow row, then subscriptions.
-- No statement NOTIFYs in its own transaction (the functions' channel arguments are NULL, which
-- turns their NOTIFYs off, migration 0017): the caller posts the wake-ups its change calls for,
-- and app/db/wakeups.py sends them after the commit, coalesced (send_wakeups). The one
-- exception is model_slot, whose NOTIFY names the waiter it granted a slot to.

-- name: accept_run_leased
-- A new run, leased to the process that executes it now.
INSERT INTO workflow
    (key, query, model, instructions, tools, max_steps, output_schema, approvers,
     approval_timeout_seconds, created_by, priority, traceparent, status, attempts,
     lease_owner, lease_expires_at, started_at)
VALUES (:key, :query, :model, :instructions, CAST(:tools AS jsonb), :max_steps,
        :output_schema, CAST(:approvers AS jsonb), :approval_timeout_seconds, :created_by,
        :priority, :traceparent,
        'running', 1, :owner, now() + make_interval(secs => :lease_seconds), now())
ON CONFLICT (key) DO NOTHING
RETURNING to_jsonb(workflow) AS workflow_row

-- name: accept_run_for_any
-- A new run nobody leased (the caller announces it to every worker after the commit).
INSERT INTO workflow
    (key, query, model, instructions, tools, max_steps, output_schema, approvers,
     approval_timeout_seconds, created_by, priority, traceparent, status)
VALUES (:key, :query, :model, :instructions, CAST(:tools AS jsonb), :max_steps,
        :output_schema, CAST(:approvers AS jsonb), :approval_timeout_seconds, :created_by,
        :priority, :traceparent,
        'pending')
ON CONFLICT (key) DO NOTHING
RETURNING to_jsonb(workflow) AS workflow_row

-- name: select_workflow
SELECT to_jsonb(workflow) AS workflow_row FROM workflow WHERE key = :key

-- name: select_workflows
SELECT to_jsonb(workflow) AS workflow_row FROM workflow WHERE key = ANY(:keys)

-- name: claim_runs
-- Lease unfinished runs that nobody holds (or whose holder died) and are due, by priority
-- then due time (the claim rank of migration 0014 walks ix_workflow_claim_rank in order); a
-- waiting run is due when its approval's deadline passes.
WITH claimable AS (
    SELECT key FROM workflow
    WHERE status IN ('pending', 'running', 'waiting') AND next_attempt_at <= now()
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY agent_notify_claim_rank_v1(next_attempt_at, priority)
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE workflow AS w
SET status = 'running', lease_owner = :owner,
    lease_expires_at = now() + make_interval(secs => :lease_seconds),
    attempts = w.attempts + 1, started_at = coalesce(w.started_at, now()), updated_at = now()
FROM claimable WHERE w.key = claimable.key
RETURNING to_jsonb(w) AS workflow_row

-- name: retry_run_later
-- Give the run back, due again after the delay, with the last error recorded.
UPDATE workflow
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, error = :error,
    next_attempt_at = now() + make_interval(secs => :delay_seconds), updated_at = now()
WHERE key = :key AND created_at = :created_at AND lease_owner = :owner AND status = 'running'

-- name: complete_run
-- Finish the run, its answer's model turn (`step`, jsonb; NULL: none) journaled in the same
-- transaction; with `structured` (an output_schema) the promise's value is the JSON answer.
SELECT * FROM agent_notify_complete_run_v2(
    :key, :created_at, :owner, :output, :error, CAST(:step AS jsonb), :structured, :room,
    :lease_seconds, :notify_on_failure, :agent_promise, NULL::text, NULL::text)

-- name: resume_run
SELECT * FROM agent_notify_resume_v1(
    :key, :max_steps, :nonce, :agent_promise, NULL::text, NULL::text)

-- name: cancel_workflow
SELECT * FROM agent_notify_cancel_v2(
    :key, :reason, :owner, :room, :lease_seconds, :notify_on_failure, :agent_promise,
    NULL::text, NULL::text)

-- name: delete_workflow
SELECT * FROM agent_notify_delete_workflow_v1(:key, NULL::text)

-- name: purge_finished
SELECT agent_notify_purge_v1(:retention_seconds, :limit)

-- name: release_leases
-- Hand back what this process holds but will not finish, so others take it at once.
WITH runs AS (
    UPDATE workflow
    SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE lease_owner = :owner AND status = 'running'
    RETURNING 1
), deliveries AS (
    UPDATE subscription
    SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE lease_owner = :owner AND status = 'ready'
    RETURNING 1
)
SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM deliveries) AS deliveries

-- name: renew_leases
-- Extend the leases of the runs, deliveries and Idempotency-Key claims this process works on;
-- returns the keys and ids it still held.
WITH runs AS (
    UPDATE workflow SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
    WHERE key = ANY(:run_keys) AND lease_owner = :owner AND status = 'running'
    RETURNING key
), deliveries AS (
    UPDATE subscription SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
    WHERE id = ANY(:subscription_ids) AND lease_owner = :owner AND status = 'ready'
    RETURNING id
), requests AS (
    UPDATE idempotency_key
    SET claim_expires_at = now() + make_interval(secs => :lease_seconds)
    WHERE :idempotent_requests AND claimed_by = :owner AND status_code IS NULL
    RETURNING 1
)
SELECT ARRAY(SELECT key FROM runs) AS runs, ARRAY(SELECT id FROM deliveries) AS deliveries

-- name: confirm_run_lease
-- The fence before a model call: renew the run's lease if this attempt of this process still
-- holds it (one row), else change nothing (none).
UPDATE workflow SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
WHERE key = :key AND created_at = :created_at AND lease_owner = :owner
  AND attempts = :attempts AND status = 'running'

-- name: begin_step
-- A step of a run's agent loop begins: journaled, and fenced in the same statement. Only while
-- this attempt of this process holds the run's lease (renewed here, as confirm_run_lease does):
-- the step is inserted, or, when the run's step at this seq exists without a result (it was in
-- flight at a crash, or its model call failed), executed again under the same id with its
-- attempts counted. No row: the lease passed on (or the run was cancelled), or the step
-- already has a result; the caller makes no effect. `previous` (jsonb, NULL: none) is the step
-- before it with its result, recorded in the same statement (as record_step would: begun or
-- not, its attempts the run's if new; one with another result keeps it, and then this step does
-- not begin: no row): the loop finishes a step and begins the next one, with no effect between
-- them, in one commit. After a step statement the caller NOTIFYs
-- "<key> steps": only those following the run's steps (/events) are woken.
WITH held AS (
    UPDATE workflow SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
    WHERE key = :key AND created_at = :created_at AND lease_owner = :owner
      AND attempts = :attempts AND status = 'running'
    RETURNING key, created_at, attempts
), previous AS (
    INSERT INTO step AS s
        (id, workflow_key, run_created_at, seq, kind, name, input, output, status, attempts,
         error, input_tokens, output_tokens, cost_usd, started_at, finished_at)
    SELECT (p->>'id')::uuid, held.key, held.created_at, (p->>'seq')::integer, p->>'kind',
           p->>'name', p->'input', p->'output', p->>'status', held.attempts, p->>'error',
           (p->>'input_tokens')::integer, (p->>'output_tokens')::integer,
           (p->>'cost_usd')::double precision,
           least(coalesce((p->>'started_at')::timestamptz, now()), now()), now()
    FROM held, (SELECT CAST(:previous AS jsonb) AS p) AS given
    WHERE given.p IS NOT NULL
    ON CONFLICT (workflow_key, run_created_at, seq) DO UPDATE
    SET status = excluded.status, output = excluded.output, error = excluded.error,
        input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
        cost_usd = excluded.cost_usd, finished_at = now()
    WHERE s.output IS NULL OR s.output = excluded.output
    RETURNING 1
)
INSERT INTO step AS s (id, workflow_key, run_created_at, seq, kind, name, input, status)
SELECT :id, held.key, held.created_at, :seq, :kind, :name, CAST(:input AS jsonb), 'running'
FROM held
WHERE CAST(:previous AS jsonb) IS NULL OR EXISTS (SELECT FROM previous)
ON CONFLICT (workflow_key, run_created_at, seq) DO UPDATE
SET attempts = s.attempts + 1, status = 'running', error = NULL, started_at = now(),
    finished_at = NULL
WHERE s.output IS NULL
RETURNING to_jsonb(s) AS step_row

-- name: finish_step
-- Record a step's result (or its model call's error), only while its run is this process's
-- and running: a late finish of a run taken over, cancelled, or deleted (its key perhaps
-- running again: another created_at) changes nothing and returns no row. The same result
-- again (a retry after a lost reply) is recorded again; another one is not.
UPDATE step AS s
SET status = :status, output = CAST(:output AS jsonb), error = :error,
    input_tokens = :input_tokens, output_tokens = :output_tokens, cost_usd = :cost_usd,
    finished_at = now()
FROM workflow AS w
WHERE s.id = :id AND (s.output IS NULL OR s.output = CAST(:output AS jsonb))
  AND w.key = s.workflow_key
  AND w.created_at = s.run_created_at AND w.lease_owner = :owner AND w.status = 'running'
RETURNING to_jsonb(s) AS step_row

-- name: record_step
-- A step that no statement began (a run's first model turn: the run's claim marked it started),
-- journaled with its result in one statement, fenced as begin_step is; its attempts are the
-- run's. A step at this seq without a result (its model call failed before) takes the result;
-- one with another result keeps it (no row then).
WITH held AS (
    UPDATE workflow SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
    WHERE key = :key AND created_at = :created_at AND lease_owner = :owner
      AND attempts = :attempts AND status = 'running'
    RETURNING key, created_at, attempts
)
INSERT INTO step AS s
    (id, workflow_key, run_created_at, seq, kind, name, input, output, status, attempts, error,
     input_tokens, output_tokens, cost_usd, started_at, finished_at)
SELECT :id, held.key, held.created_at, :seq, :kind, :name, CAST(:input AS jsonb),
       CAST(:output AS jsonb), :status, held.attempts, :error, :input_tokens, :output_tokens,
       :cost_usd, least(:started_at, now()), now()
FROM held
ON CONFLICT (workflow_key, run_created_at, seq) DO UPDATE
SET status = excluded.status, output = excluded.output, error = excluded.error,
    input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
    cost_usd = excluded.cost_usd, finished_at = now()
WHERE s.output IS NULL OR s.output = excluded.output
RETURNING to_jsonb(s) AS step_row

-- name: run_steps
-- A run's journal, in order: what its agent loop is rebuilt from.
SELECT to_jsonb(step) AS step_row FROM step
WHERE workflow_key = :key AND run_created_at = :created_at
ORDER BY seq

-- name: list_steps
-- A page of the steps of the key's current run, after seq `after_seq` (-1: from the first),
-- with input and output as JSON text cut to `max_chars` and their full lengths.
SELECT s.id, s.seq, s.kind, s.name, s.status, s.attempts, s.error, s.input_tokens,
       s.output_tokens, s.cost_usd, s.started_at, s.finished_at,
       left(s.input::text, :max_chars) AS input, length(s.input::text) AS input_length,
       left(s.output::text, :max_chars) AS output, length(s.output::text) AS output_length
FROM step AS s JOIN workflow AS w ON w.key = s.workflow_key AND w.created_at = s.run_created_at
WHERE w.key = :key AND s.seq > :after_seq
ORDER BY s.seq
LIMIT :limit

-- name: run_usage
-- Tokens and cost summed over the steps of the key's current run.
SELECT coalesce(sum(s.input_tokens), 0) AS input_tokens,
       coalesce(sum(s.output_tokens), 0) AS output_tokens,
       sum(s.cost_usd) AS cost_usd
FROM step AS s JOIN workflow AS w ON w.key = s.workflow_key AND w.created_at = s.run_created_at
WHERE w.key = :key

-- name: select_promise
SELECT to_jsonb(promise) AS promise_row FROM promise WHERE workflow_key = :key AND name = :name

-- name: complete_promise
SELECT * FROM agent_notify_complete_promise_v2(
    :key, :name, CAST(:value AS jsonb), :error, :owner, :room, :lease_seconds,
    :notify_on_failure, NULL::text, NULL::text)

-- name: subscribe
-- An email address (`email`) or a webhook or Apprise target (`target`, `secret`).
SELECT * FROM agent_notify_subscribe_v2(
    :key, :promise, :channel, :email, :target, :secret, :id, :message_id, :owner, :room,
    :lease_seconds, :notify_on_failure, :max_per_workflow, NULL::text)

-- name: request_approval
SELECT * FROM agent_notify_request_approval_v1(
    :key, :created_at, :owner, :step_id, CAST(:request AS jsonb), CAST(:approvers AS jsonb),
    :timeout_seconds, :lease_seconds, :notify_on_failure, :max_per_workflow, NULL::text,
    NULL::text)

-- name: suspend_run
SELECT * FROM agent_notify_suspend_run_v1(
    :key, :created_at, :owner, :promises, :wake_at, NULL::text, NULL::text)

-- name: select_subscription
SELECT to_jsonb(subscription) AS subscription_row FROM subscription WHERE id = :id

-- name: claim_deliveries
-- Lease ready subscriptions that nobody holds (or whose holder died) and are due, each with
-- its promise's outcome.
WITH claimable AS (
    SELECT id FROM subscription
    WHERE status = 'ready' AND next_attempt_at <= now()
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY next_attempt_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE subscription AS s
SET lease_owner = :owner, lease_expires_at = now() + make_interval(secs => :lease_seconds),
    attempts = s.attempts + 1, updated_at = now()
FROM claimable, promise AS p
WHERE s.id = claimable.id AND p.workflow_key = s.workflow_key AND p.name = s.promise_name
RETURNING to_jsonb(s) AS subscription_row, to_jsonb(p) AS promise_row

-- name: mark_sent
-- Record the acceptance of notifications whose lease `owner` still holds; returns, for each,
-- the seconds since it became ready, and its key (the caller wakes whoever waits on it).
UPDATE subscription
SET status = 'sent', sent_at = now(), last_error = NULL, lease_owner = NULL,
    lease_expires_at = NULL, updated_at = now()
WHERE id = ANY(:ids) AND lease_owner = :owner AND status = 'ready'
RETURNING id, workflow_key, extract(epoch FROM now() - coalesce(ready_at, created_at))::float AS waited

-- name: fail_delivery
-- Give up on a subscription, with the reason recorded.
UPDATE subscription
SET status = 'failed', last_error = :error, lease_owner = NULL, lease_expires_at = NULL,
    updated_at = now()
WHERE id = :id AND lease_owner = :owner AND status = 'ready'
RETURNING workflow_key

-- name: confirm_delivery_lease
-- The fence before sending: renew the delivery's lease if this attempt of this process still
-- holds it (one row), else change nothing (none).
UPDATE subscription SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
WHERE id = :id AND lease_owner = :owner AND attempts = :attempts AND status = 'ready'

-- name: retry_delivery_later
-- Give the delivery back, due again after the delay, with the last error recorded; when the
-- attempt's outcome was unknown, the first such attempt's time too.
UPDATE subscription
SET lease_owner = NULL, lease_expires_at = NULL, last_error = :error,
    next_attempt_at = now() + make_interval(secs => :delay_seconds), updated_at = now(),
    outcome_unknown_at = CASE WHEN :outcome_unknown THEN coalesce(outcome_unknown_at, now())
                              ELSE outcome_unknown_at END
WHERE id = :id AND lease_owner = :owner AND status = 'ready'

-- name: expire_subscriptions
-- Subscriptions that waited longer than the TTL (their task never finished) expire.
UPDATE subscription
SET status = 'expired', updated_at = now(),
    last_error = 'expired: no result after waiting ' || make_interval(secs => :ttl_seconds)::text
WHERE id IN (
    SELECT id FROM subscription
    WHERE status = 'waiting' AND created_at < now() - make_interval(secs => :ttl_seconds)
    ORDER BY created_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
RETURNING workflow_key, id

-- name: workflow_subscriptions
SELECT to_jsonb(subscription) AS subscription_row FROM subscription
WHERE workflow_key = :key ORDER BY created_at, id

-- name: list_workflows
-- Newest first, of the states asked for. `before_at`/`before_key` are the previous page's last
-- row (NULL: the first page), so rows inserted meanwhile never shift a page; `key_prefix` (''
-- for every key) is compared as plain text (starts_with, not LIKE: '%' and '_' match only
-- themselves). Written so that a generic plan still walks ix_workflow_created_at_key from the
-- cursor down; the counts and the usage (summed over the run's steps, on their unique index)
-- are computed for the page's rows only.
SELECT key, status, left(query, 200) AS query, model, attempts, left(error, 200) AS error,
       created_at, updated_at, finished_at,
       (SELECT count(*) FROM subscription AS s WHERE s.workflow_key = w.key) AS subscribers,
       (SELECT count(*) FROM subscription AS s
        WHERE s.workflow_key = w.key AND s.status = 'sent') AS notified,
       usage.input_tokens, usage.output_tokens, usage.cost_usd
FROM workflow AS w
CROSS JOIN LATERAL (
    SELECT coalesce(sum(s.input_tokens), 0) AS input_tokens,
           coalesce(sum(s.output_tokens), 0) AS output_tokens, sum(s.cost_usd) AS cost_usd
    FROM step AS s WHERE s.workflow_key = w.key AND s.run_created_at = w.created_at
) AS usage
WHERE (created_at, key) < (coalesce(CAST(:before_at AS timestamptz), 'infinity'),
                           coalesce(CAST(:before_key AS text), ''))
  AND status = ANY(:statuses)
  AND starts_with(key, :key_prefix)
ORDER BY created_at DESC, key DESC
LIMIT :limit

-- name: list_own_workflows
-- list_workflows of one token's workflows: walks ix_workflow_created_by_created_at_key.
SELECT key, status, left(query, 200) AS query, model, attempts, left(error, 200) AS error,
       created_at, updated_at, finished_at,
       (SELECT count(*) FROM subscription AS s WHERE s.workflow_key = w.key) AS subscribers,
       (SELECT count(*) FROM subscription AS s
        WHERE s.workflow_key = w.key AND s.status = 'sent') AS notified,
       usage.input_tokens, usage.output_tokens, usage.cost_usd
FROM workflow AS w
CROSS JOIN LATERAL (
    SELECT coalesce(sum(s.input_tokens), 0) AS input_tokens,
           coalesce(sum(s.output_tokens), 0) AS output_tokens, sum(s.cost_usd) AS cost_usd
    FROM step AS s WHERE s.workflow_key = w.key AND s.run_created_at = w.created_at
) AS usage
WHERE (created_at, key) < (coalesce(CAST(:before_at AS timestamptz), 'infinity'),
                           coalesce(CAST(:before_key AS text), ''))
  AND created_by = :created_by AND status = ANY(:statuses)
  AND starts_with(key, :key_prefix)
ORDER BY created_at DESC, key DESC
LIMIT :limit

-- name: key_owner
-- Whom a key belongs to: its workflow's creator; before its run, whoever claimed it by
-- subscribing (any of its promises' created_by: a claim makes the key's first promise).
SELECT EXISTS (SELECT FROM workflow WHERE key = :key) AS has_workflow,
       (SELECT created_by FROM workflow WHERE key = :key) AS workflow_by,
       EXISTS (SELECT FROM promise WHERE workflow_key = :key) AS has_promise,
       (SELECT max(created_by) FROM promise WHERE workflow_key = :key) AS promise_by

-- name: claim_key
-- A user's subscriber comes before the run: the key becomes theirs (its agent promise made
-- pending, as subscribing would), unless anything of the key exists already.
INSERT INTO promise (workflow_key, name, state, created_by)
SELECT :key, :agent_promise, 'pending', :created_by
WHERE NOT EXISTS (SELECT FROM workflow WHERE key = :key)
  AND NOT EXISTS (SELECT FROM promise WHERE workflow_key = :key)
ON CONFLICT DO NOTHING

-- name: changed_keys
-- Of `keys`, those whose workflow or subscriptions changed after `since` (all when NULL), and
-- the database's clock now, for the next call.
SELECT now() AS now, ARRAY(
    SELECT key FROM workflow
    WHERE key = ANY(:keys) AND (CAST(:since AS timestamptz) IS NULL OR updated_at > :since)
    UNION
    SELECT workflow_key FROM subscription
    WHERE workflow_key = ANY(:keys)
      AND (CAST(:since AS timestamptz) IS NULL OR updated_at > :since)
) AS changed

-- name: state_counts
-- Rows by state, and work that is due with nobody holding it (for /metrics).
SELECT 'workflow' AS family, status, count(*) AS n FROM workflow GROUP BY status
UNION ALL
SELECT 'subscription', status, count(*) FROM subscription GROUP BY status
UNION ALL
SELECT 'claimable', 'run', count(*) FROM workflow
WHERE status IN ('pending', 'running', 'waiting') AND next_attempt_at <= now()
  AND (lease_expires_at IS NULL OR lease_expires_at < now())
UNION ALL
SELECT 'claimable', 'delivery', count(*) FROM subscription
WHERE status = 'ready' AND next_attempt_at <= now()
  AND (lease_expires_at IS NULL OR lease_expires_at < now())

-- name: claim_idempotency_key
-- Claim an Idempotency-Key for a request, leased to `owner`: first use, or the same request
-- whose earlier claimant died. `claimed` is false when it is someone else's; the row then says
-- what is recorded. No row: a concurrent first use committed after this statement began.
WITH claimed AS (
    INSERT INTO idempotency_key (key, fingerprint, claimed_by, claim_expires_at)
    VALUES (:key, :fingerprint, :owner, now() + make_interval(secs => :lease_seconds))
    ON CONFLICT (key) DO UPDATE
    SET claimed_by = excluded.claimed_by, claim_expires_at = excluded.claim_expires_at,
        created_at = now()
    WHERE idempotency_key.status_code IS NULL
      AND idempotency_key.claim_expires_at < now()
      AND idempotency_key.fingerprint = excluded.fingerprint
    RETURNING key
)
SELECT true AS claimed, CAST(:fingerprint AS text) AS fingerprint, NULL::integer AS status_code,
       NULL::bytea AS response_body, NULL::text AS content_type
FROM claimed
UNION ALL
SELECT false, fingerprint, status_code, response_body, content_type
FROM idempotency_key
WHERE key = :key AND NOT EXISTS (SELECT 1 FROM claimed)

-- name: finish_idempotency_key
UPDATE idempotency_key
SET status_code = :status_code, response_body = :body, content_type = :content_type,
    completed_at = now()
WHERE key = :key

-- name: forget_idempotency_key
-- Drop the claim of a request that failed on our side, so a retry runs again.
DELETE FROM idempotency_key WHERE key = :key AND completed_at IS NULL

-- name: purge_idempotency_keys
DELETE FROM idempotency_key WHERE created_at < now() - make_interval(secs => :ttl_seconds)

-- name: schema_revision
SELECT version_num FROM alembic_version

-- name: insert_signing_key
-- The first process to need the key stores the one it generated; later ones change nothing.
INSERT INTO signing_key (name, secret) VALUES (:name, :secret) ON CONFLICT (name) DO NOTHING

-- name: select_signing_key
SELECT secret FROM signing_key WHERE name = :name

-- name: cancel_subscription
-- Cancel a subscription whose notification is not sent yet (its recipient unsubscribed), with
-- the reason recorded; the row as it is after, and whether this changed it. None if it no
-- longer exists. A delivery under way loses its lease: its fence will not send.
WITH cancelled AS (
    UPDATE subscription
    SET status = 'cancelled', last_error = :reason, lease_owner = NULL, lease_expires_at = NULL,
        updated_at = now()
    WHERE id = :id AND status IN ('waiting', 'ready')
    RETURNING *
)
SELECT to_jsonb(c) AS subscription_row, true AS changed
FROM cancelled AS c
UNION ALL
SELECT to_jsonb(s), false FROM subscription AS s
WHERE s.id = :id AND NOT EXISTS (SELECT FROM cancelled)

-- name: model_slot
-- Wait for, renew, or give back (`release`) a slot of a model bucket; free slots go to the
-- best waiters, each told by a NOTIFY on the flow channel (migration 0014).
SELECT * FROM agent_notify_model_slot_v1(
    :bucket, :ticket, :release, :tokens, :workflow_key, :owner, :priority, :concurrency,
    :requests_per_minute, :tokens_per_minute, :wait_seconds, :hold_seconds, :flow_channel)

-- name: pause_model
-- A provider said 429 until then: every replica is told how long the model is paused.
INSERT INTO model_pause AS p (model, paused_until)
VALUES (:model, now() + make_interval(secs => :seconds))
ON CONFLICT (model) DO UPDATE SET paused_until = greatest(p.paused_until, excluded.paused_until)
RETURNING extract(epoch FROM p.paused_until - now())::text AS seconds

-- name: model_pauses
-- The models paused now, with the seconds left (read when the listener (re)connects).
SELECT model, extract(epoch FROM paused_until - now())::float8 AS seconds
FROM model_pause WHERE paused_until > now()

-- name: send_wakeups
-- Wake-ups owed to every LISTENing process for changes committed before: one notification per
-- (channel, payload), in a transaction of their own that does not wait for its WAL flush (it
-- wrote no row; a wake-up lost in a crash is one the fallback poll gives).
SELECT count(pg_notify(w.channel, w.payload))
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS local_setting,
     unnest(CAST(:channels AS text[]), CAST(:payloads AS text[])) AS w(channel, payload)
