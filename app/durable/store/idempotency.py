"""Idempotency-Key records: the first response to a POST, replayed to its retries."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from app.durable.store.rows import Queries


@dataclass(frozen=True, slots=True)
class IdempotentResponse:
    fingerprint: str
    # None while the first request is still being answered.
    status_code: int | None
    body: bytes | None
    content_type: str | None


class IdempotencyKeys(Queries):
    async def begin_idempotent(
        self, key: str, fingerprint: str, *, owner: str, lease_seconds: float
    ) -> IdempotentResponse | None:
        """Claim `key` for a request, leased to `owner`; None if the claim is ours (first use,
        or the same request whose earlier claimant died), else what is recorded."""
        async with self._engine.begin() as connection:
            inserted = await connection.scalar(
                text("""
                    INSERT INTO idempotency_key (key, fingerprint, claimed_by, claim_expires_at)
                    VALUES (:key, :fingerprint, :owner, now() + make_interval(secs => :lease))
                    ON CONFLICT (key) DO UPDATE
                    SET claimed_by = excluded.claimed_by,
                        claim_expires_at = excluded.claim_expires_at, created_at = now()
                    WHERE idempotency_key.status_code IS NULL
                      AND idempotency_key.claim_expires_at < now()
                      AND idempotency_key.fingerprint = excluded.fingerprint
                    RETURNING key
                """),
                {"key": key, "fingerprint": fingerprint, "owner": owner, "lease": lease_seconds},
            )
            if inserted is not None:
                return None
            row = (
                await connection.execute(
                    text("""
                        SELECT fingerprint, status_code, response_body, content_type
                        FROM idempotency_key WHERE key = :key
                    """),
                    {"key": key},
                )
            ).one()
            return IdempotentResponse(
                row.fingerprint, row.status_code, row.response_body, row.content_type
            )

    async def finish_idempotent(
        self, key: str, *, status_code: int, body: bytes, content_type: str | None
    ) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                text("""
                    UPDATE idempotency_key
                    SET status_code = :status_code, response_body = :body,
                        content_type = :content_type, completed_at = now()
                    WHERE key = :key
                """),
                {
                    "key": key,
                    "status_code": status_code,
                    "body": body,
                    "content_type": content_type,
                },
            )

    async def forget_idempotent(self, key: str) -> None:
        """Drop the claim of a request that failed on our side, so a retry runs again."""
        async with self._engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM idempotency_key WHERE key = :key AND completed_at IS NULL"),
                {"key": key},
            )

    async def purge_idempotency_keys(self, *, ttl_seconds: float) -> int:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                text("""
                    DELETE FROM idempotency_key
                    WHERE created_at < now() - make_interval(secs => :ttl)
                """),
                {"ttl": ttl_seconds},
            )
            return result.rowcount
