-- The table the two scripts write: 10,000 rows, one updated per transaction (as a workflow's
-- row is by each of the service's statements).
DROP TABLE IF EXISTS capacity_row;
CREATE TABLE capacity_row (id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
INSERT INTO capacity_row (id) SELECT generate_series(1, 10000);
VACUUM ANALYZE capacity_row;
