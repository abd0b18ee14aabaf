"""A worker's item waiting on something outside (a model slot) gives its slot back meanwhile,
and takes one again after — however its wait ends."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest

from app.engine.retry import RetryPolicy
from app.engine.worker import Worker


class Parker(Worker[str]):
    """Items are names; each parks until its event is set (or fails, or is cancelled)."""

    def __init__(self, concurrency: int) -> None:
        super().__init__(
            concurrency=concurrency,
            poll_interval_seconds=60,
            retry=RetryPolicy(0.1, 1, 3),
            lease_seconds=30,
        )
        self.release: dict[str, asyncio.Event] = {}
        self.running: set[str] = set()
        self.waiting: set[str] = set()  # items inside `parked`, waiting for their event
        self.waited = asyncio.Condition()
        self.most_running = 0
        self.failed: list[str] = []

    def identity(self, item: str) -> Hashable:
        return item

    def attempts(self, item: str) -> int:
        return 1

    def log_fields(self, item: str) -> dict[str, str]:
        return {}

    async def give_up(self, item: str, error: str) -> None:
        self.failed.append(item)

    async def process(self, item: str) -> None:
        event = self.release.setdefault(item, asyncio.Event())
        async with self.parked(item):
            async with self.waited:
                self.waiting.add(item)
                self.waited.notify_all()
            await event.wait()
            if item.startswith("fail"):
                raise RuntimeError(item)
        self.running.add(item)
        self.most_running = max(self.most_running, len(self.running))
        await asyncio.sleep(0)
        self.running.discard(item)


async def _waiting(worker: Parker, *items: str) -> None:
    """Until each of `items` waits inside `parked` (given its slot back, where it could)."""
    async with asyncio.timeout(10), worker.waited:
        await worker.waited.wait_for(lambda: worker.waiting.issuperset(items))


async def _finished(worker: Parker) -> None:
    await asyncio.wait(list(worker._inflight.values()))


async def _slots_left(worker: Parker) -> int:
    """How many slots the worker's semaphore gives out now (taken and given back)."""
    slots = worker._slots
    taken = 0
    while not slots.locked():
        await slots.acquire()
        taken += 1
    for _ in range(taken):
        slots.release()
    return taken


async def test_a_parked_item_frees_its_slot_and_takes_one_again() -> None:
    worker = Parker(concurrency=2)
    for item in ("a", "b"):
        worker.submit(item, leased_at=worker.leases.now())
    await _waiting(worker, "a", "b")
    # Both wait outside: the worker has room for two more (at most `capacity` parked).
    assert worker.free_slots() == 2
    for item in ("c", "d"):
        worker.submit(item, leased_at=worker.leases.now())
    await _waiting(worker, "c", "d")
    assert worker.free_slots() == 0
    for event in worker.release.values():
        event.set()
    await _finished(worker)
    assert worker.most_running <= 2
    # Every slot came back: two items can hold one at once again, and no more.
    assert await _slots_left(worker) == 2


@pytest.mark.parametrize("ending", ["fail", "cancel"])
async def test_an_item_ending_while_parked_leaves_the_slots_as_they_were(ending: str) -> None:
    worker = Parker(concurrency=1)
    item = f"{ending}-1"
    worker.submit(item, leased_at=worker.leases.now())
    await _waiting(worker, item)
    assert worker.free_slots() == 1
    if ending == "fail":
        worker.release[item].set()
    else:
        worker._inflight[item].cancel()
    await _finished(worker)
    assert await _slots_left(worker) == 1
    assert worker.failed == ([item] if ending == "fail" else [])
