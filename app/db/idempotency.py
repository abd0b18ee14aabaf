"""Idempotency-Key records: the first response to a POST, replayed to its retries."""

from __future__ import annotations

from app.db.gateway import Database
from app.db.rows import IdempotentResponse
from app.db.scope import Scope


class IdempotencyKeys:
    def __init__(self, database: Database, scope: Scope) -> None:
        self._db = database
        self._bound = scope.params()

    async def claim(self, key: str, fingerprint: str) -> IdempotentResponse | None:
        """Claim `key` for a request, leased to this process; None if the claim is ours (first
        use, or the same request whose earlier claimant died), else what is recorded."""
        while True:
            row = await self._db.fetchrow(
                "claim_idempotency_key", key=key, fingerprint=fingerprint, **self._bound
            )
            if row is not None:
                break
            # A first use committed after the statement began: read it again.
        if row["claimed"]:
            return None
        return IdempotentResponse(
            row["fingerprint"], row["status_code"], row["response_body"], row["content_type"]
        )

    async def finish(
        self, key: str, *, status_code: int, body: bytes, content_type: str | None
    ) -> None:
        await self._db.execute(
            "finish_idempotency_key",
            key=key,
            status_code=status_code,
            body=body,
            content_type=content_type,
        )

    async def forget(self, key: str) -> None:
        """Drop the claim of a request that failed on our side, so a retry runs again."""
        await self._db.execute("forget_idempotency_key", key=key)

    async def purge(self, *, ttl_seconds: float) -> int:
        return await self._db.execute("purge_idempotency_keys", ttl_seconds=ttl_seconds)
