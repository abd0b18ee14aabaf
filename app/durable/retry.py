"""Exponential backoff with jitter, from the RETRY_* settings."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, initial: float, maximum: float, factor: float = 2.0) -> float:
    """Delay after the `attempt`-th (1-based) failed attempt: initial × factor^(attempt-1), capped.

    "Equal jitter": a random point in the upper half of the bound, so retries of many rows that
    failed together spread out but none comes back much sooner than planned.
    """
    bound = min(maximum, initial * factor ** max(attempt - 1, 0))
    return bound / 2 + random.uniform(0, bound / 2)
