"""Promises completed from outside (a person in the loop, another system)."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import text

from app.durable.store.rows import (
    PROMISE_COLUMNS,
    PromiseCompletion,
    PromiseRow,
    Queries,
    UnknownWorkflow,
    lock_promise,
    promise_of,
    select_promise,
)
from app.durable.store.subscriptions import announce_completion


class Promises(Queries):
    async def get_promise(self, key: str, name: str) -> PromiseRow | None:
        async with self._single.connect() as connection:
            row = await select_promise(connection, key, name)
            return None if row is None else promise_of(row)

    async def complete_promise(
        self,
        key: str,
        name: str,
        *,
        value: object = None,
        error: str | None = None,
        deliver_to: str,
        reserve: Callable[[int], int],
        lease_seconds: float,
        notify_on_failure: bool,
    ) -> PromiseCompletion:
        """Resolve (`error` None) or reject the promise, creating it if absent; first writer wins.

        Raises UnknownWorkflow when the key has no workflow. Subscribers of the promise are
        readied exactly as when a run completes it (see release_waiting).
        """
        resolved = error is None
        async with self._engine.begin() as connection:
            known = await connection.scalar(
                text("SELECT 1 FROM workflow WHERE key = :key"), {"key": key}
            )
            if known is None:
                raise UnknownWorkflow(key)
            current = await lock_promise(connection, key, name, exclusive=True)
            if current.state != "pending":
                return PromiseCompletion(promise_of(current), changed=False, deliveries=[])
            completed = (
                await connection.execute(
                    text(f"""
                        UPDATE promise
                        SET state = :state, value = CAST(:value AS jsonb), error = :error,
                            completed_at = now()
                        WHERE workflow_key = :key AND name = :name
                        RETURNING {PROMISE_COLUMNS}
                    """),
                    {
                        "key": key,
                        "name": name,
                        "state": "resolved" if resolved else "rejected",
                        "value": json.dumps(value, allow_nan=False) if resolved else None,
                        "error": error,
                    },
                )
            ).one()
            deliveries = await announce_completion(
                connection,
                key,
                name,
                deliver_to=deliver_to,
                reserve=reserve,
                lease_seconds=lease_seconds,
                notify_on_failure=notify_on_failure,
                promise=completed,
            )
            return PromiseCompletion(promise_of(completed), changed=True, deliveries=deliveries)
