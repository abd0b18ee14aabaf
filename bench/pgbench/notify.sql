-- The same write with a NOTIFY in its transaction, as the service's statements send theirs
-- (`RETURNING pg_notify(...)`; delivered at commit).
\set id random(1, 10000)
UPDATE capacity_row SET n = n + 1 WHERE id = :id RETURNING pg_notify('capacity', :id::text);
