"""EXPLAIN ANALYZE of the runner's claim (claim_runs) on a large workflow table: 1,000,000
rows, 950,000 finished and 50,000 unfinished (half of them leased), priorities -3..3.

    .venv/bin/python -m bench.explain_claim

on DATABASE_URL's server (a scratch database is created and dropped). The claim must walk
ix_workflow_claim_rank in order and stop after LIMIT rows (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from app.db import migrate
from app.db.connection import asyncpg_dsn, create_engine
from app.db.gateway import statement
from tests.conftest import create_database, drop_database

SERVER = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROWS = """
INSERT INTO workflow (key, query, status, priority, next_attempt_at, finished_at)
SELECT 'k' || i, 'q',
       CASE WHEN i % 20 = 0 THEN (ARRAY['pending', 'running'])[1 + i % 2] ELSE 'succeeded' END,
       i % 7 - 3, now() - make_interval(secs => i % 5000),
       CASE WHEN i % 20 = 0 THEN NULL ELSE now() END
FROM generate_series(1, 1000000) AS i
"""
LEASED = """
UPDATE workflow SET lease_owner = 'x', lease_expires_at = now() + interval '1 hour'
WHERE status = 'running'
"""


async def main() -> None:
    url = await create_database(SERVER, "flow_explain")
    try:
        engine = create_engine(url, pool_size=1)
        await migrate.upgrade(engine)
        await engine.dispose()
        connection = await asyncpg.connect(asyncpg_dsn(url))
        await connection.execute(ROWS)
        await connection.execute(LEASED)
        await connection.execute("ANALYZE workflow")
        claim = statement("claim_runs")
        values = {"limit": 10, "owner": "explain", "lease_seconds": 15.0}
        transaction = connection.transaction()
        await transaction.start()  # rolled back: the claim's UPDATE leaves nothing behind
        plan = await connection.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + claim.sql,
            *[values[name] for name in claim.parameters],
        )
        await transaction.rollback()
        await connection.close()
        print("\n".join(row[0] for row in plan))
    finally:
        await drop_database(SERVER, "flow_explain")


if __name__ == "__main__":
    asyncio.run(main())
