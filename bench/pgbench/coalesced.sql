-- What app/db/wakeups.py sends after the writers' commits: one transaction NOTIFYing a batch of
-- wake-ups (16 here), which wrote no row and does not wait for its WAL flush. Run with -c 1
-- beside commit.sql's writers: a coalescer sending back to back, the most one process sends.
SELECT count(pg_notify('capacity', i::text))
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS local_setting,
     generate_series(1, 16) AS i;
