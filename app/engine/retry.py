"""Exponential backoff with jitter, from the RETRY_* settings."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from app.config import Settings
from app.db.connection import is_transient

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """RETRY_INITIAL_SECONDS, RETRY_MAX_SECONDS and RETRY_MAX_ATTEMPTS, for runs and emails; and
    for an effect whose outcome was unknown, the one late retry's delay."""

    initial_seconds: float
    max_seconds: float
    max_attempts: int
    unknown_outcome_seconds: float = 3600.0

    @classmethod
    def of(cls, settings: Settings, *, unknown_outcome_seconds: float = 3600.0) -> RetryPolicy:
        return cls(
            settings.retry_initial_seconds,
            settings.retry_max_seconds,
            settings.retry_max_attempts,
            unknown_outcome_seconds,
        )

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, initial=self.initial_seconds, maximum=self.max_seconds)


def backoff_delay(attempt: int, *, initial: float, maximum: float, factor: float = 2.0) -> float:
    """Delay after the `attempt`-th (1-based) failed attempt: initial × factor^(attempt-1), capped.

    "Equal jitter": a random point in the upper half of the bound, so retries of many rows that
    failed together spread out but none comes back much sooner than planned.
    """
    bound = min(maximum, initial * factor ** max(attempt - 1, 0))
    return bound / 2 + random.uniform(0, bound / 2)


async def through_outages(operation: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run a database operation, retrying for as long as the database is unreachable (or
    the statement lost a deadlock or serialization conflict).

    For recording an effect that already happened (an LLM answer, an accepted email): losing
    the record would mean doing the effect again, so it is worth waiting out a restart.
    """
    delay = 0.1
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            logger.warning(
                "cannot %s (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
