-- One committed write, no NOTIFY.
\set id random(1, 10000)
UPDATE capacity_row SET n = n + 1 WHERE id = :id;
