"""What this process knows of the leases it holds, by its own clock: the fence before an effect.

A lease is set by a statement to the database's `now()` + LEASE_SECONDS. The clock read just
before that statement was sent is earlier than the database's `now()`, so until that reading +
LEASE_SECONDS nobody else can have taken the row: an effect (a model call, an email) started
well inside that time needs no round trip to be sure. Past it — after a pause of the process, a
long queue, a lost renewal — the lease is confirmed in the database first, in one statement that
also renews it, and a lease that passed to another process (or to another attempt) means the
effect is not made.

What remains is the effect itself outlasting the lease while this process cannot renew it (it is
paused, or cut off from the database, in the middle of the call): then another process may make
the same effect too. Emails carry one Message-ID per subscription for receivers to de-duplicate;
tools will receive one step id.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class HeldLease:
    attempts: int  # the attempt this process holds (the row's `attempts` when it took it)
    valid_until: float  # time.monotonic(): nobody else can hold the row before this


class LeaseBook:
    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        # An effect starts only with this much of the lease left, or after confirming it.
        self.margin = lease_seconds / 4
        self._held: dict[Hashable, HeldLease] = {}

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def taken(self, identity: Hashable, attempts: int, confirmed_at: float) -> None:
        """This process took the row's lease (attempt `attempts`) in a statement sent after
        `confirmed_at`. Taken again by a later attempt, the later one counts."""
        held = self._held.get(identity)
        if held is None or attempts >= held.attempts:
            self._held[identity] = HeldLease(attempts, confirmed_at + self.lease_seconds)

    def renewed(self, identities: Iterable[Hashable], confirmed_at: float) -> None:
        for identity in identities:
            held = self._held.get(identity)
            if held is not None:
                held.valid_until = max(held.valid_until, confirmed_at + self.lease_seconds)

    def lapsed(self, identities: Iterable[Hashable]) -> None:
        """The database did not renew these: confirm them before any effect."""
        for identity in identities:
            held = self._held.get(identity)
            if held is not None:
                held.valid_until = 0.0

    def surely_ours(self, identity: Hashable) -> bool:
        held = self._held.get(identity)
        return held is not None and self.now() < held.valid_until - self.margin

    def attempts(self, identity: Hashable) -> int:
        return self._held[identity].attempts

    def forget(self, identity: Hashable) -> None:
        self._held.pop(identity, None)
