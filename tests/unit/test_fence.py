"""The lease book: what a process may assume of its own leases without asking the database."""

from __future__ import annotations

import pytest

from app.engine.fence import LeaseBook


@pytest.fixture
def book(monkeypatch: pytest.MonkeyPatch) -> tuple[LeaseBook, list[float]]:
    clock = [100.0]
    monkeypatch.setattr(LeaseBook, "now", staticmethod(lambda: clock[0]))
    return LeaseBook(lease_seconds=8.0), clock


def test_a_fresh_lease_is_surely_ours_until_a_quarter_of_it_is_left(
    book: tuple[LeaseBook, list[float]],
) -> None:
    leases, clock = book
    leases.taken("k", attempts=1, confirmed_at=clock[0])
    clock[0] = 105.9
    assert leases.surely_ours("k")
    clock[0] = 106.0  # 2 s (a quarter) left: confirm in the database first
    assert not leases.surely_ours("k")


def test_a_pause_longer_than_the_lease_leaves_nothing_sure(
    book: tuple[LeaseBook, list[float]],
) -> None:
    leases, clock = book
    leases.taken("k", attempts=1, confirmed_at=clock[0])
    clock[0] += 30  # SIGSTOP, a long GC, a lost VM
    assert not leases.surely_ours("k")
    leases.renewed(["k"], confirmed_at=clock[0])
    assert leases.surely_ours("k")


def test_a_renewal_that_missed_an_item_makes_it_unsure_at_once(
    book: tuple[LeaseBook, list[float]],
) -> None:
    leases, clock = book
    for identity in ("kept", "lost"):
        leases.taken(identity, attempts=1, confirmed_at=clock[0])
    leases.renewed(["kept"], confirmed_at=clock[0])
    leases.lapsed(["lost"])
    assert leases.surely_ours("kept")
    assert not leases.surely_ours("lost")
    assert not leases.surely_ours("never held")


def test_taken_again_by_a_later_attempt_the_later_one_counts(
    book: tuple[LeaseBook, list[float]],
) -> None:
    leases, clock = book
    leases.taken("k", attempts=3, confirmed_at=clock[0])
    leases.taken("k", attempts=2, confirmed_at=clock[0] + 1)  # an older hand-over, late
    assert leases.attempts("k") == 3
    leases.taken("k", attempts=5, confirmed_at=clock[0] + 2)
    assert leases.attempts("k") == 5
    leases.forget("k")
    assert not leases.surely_ours("k")
