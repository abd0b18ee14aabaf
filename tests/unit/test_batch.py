"""The Batcher that coalesces concurrent `sent` records into one statement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.db.batch import Batcher


async def test_alone_at_once_and_together_while_one_flush_runs() -> None:
    batches: list[list[int]] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def flush(items: Sequence[int]) -> dict[int, str]:
        batches.append(list(items))
        started.set()
        if len(batches) == 1:
            await release.wait()  # the first flush is slow: the others queue up meanwhile
        return {item: f"done {item}" for item in items if item != 3}

    batcher: Batcher[int, str | None] = Batcher(flush, missing=None)
    first = asyncio.create_task(batcher.submit(0))
    await started.wait()  # nothing waits to fill a batch: the first item is flushed alone
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert batches == [[0]]
    release.set()
    assert await first == "done 0"
    assert await asyncio.gather(*rest) == ["done 1", "done 2", None, "done 4"]
    assert batches == [[0], [1, 2, 3, 4]]  # one flush for everything submitted meanwhile


async def test_a_failed_flush_fails_its_batch_only_and_the_next_one_runs() -> None:
    calls = 0

    async def flush(items: Sequence[int]) -> dict[int, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return {item: item * 10 for item in items}

    batcher: Batcher[int, int | None] = Batcher(flush, missing=None, max_batch=2)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert isinstance(results[0], ConnectionError)
    assert isinstance(results[1], ConnectionError)
    assert results[2:] == [20, 30]
    assert await batcher.submit(7) == 70


async def test_max_batch_splits_a_large_backlog() -> None:
    sizes: list[int] = []

    async def flush(items: Sequence[int]) -> dict[int, int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return {item: item for item in items}

    batcher: Batcher[int, int | None] = Batcher(flush, missing=None, max_batch=3)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(8))) == list(range(8))
    assert sizes == [3, 3, 2]


async def test_a_drain_cancelled_before_it_started_does_not_wedge_later_submits() -> None:
    async def flush(items: Sequence[int]) -> dict[int, int]:
        return {item: item for item in items}

    batcher: Batcher[int, int | None] = Batcher(flush, missing=None)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # queued; the drain task exists but has not run
    drain = batcher._flushing
    assert drain is not None
    drain.cancel()  # its `finally` never runs: it was cancelled before its first step
    second = asyncio.create_task(batcher.submit(2))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]  # retryable
    async with asyncio.timeout(5):
        assert await batcher.submit(3) == 3  # and the batcher works on


async def test_a_drain_cancelled_mid_flush_gives_its_callers_a_retryable_error() -> None:
    started = asyncio.Event()

    async def flush(items: Sequence[int]) -> dict[int, int]:
        started.set()
        await asyncio.Event().wait()
        return {}

    batcher: Batcher[int, int | None] = Batcher(flush, missing=None)
    first = asyncio.create_task(batcher.submit(1))
    await started.wait()
    queued = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    assert batcher._flushing is not None
    batcher._flushing.cancel()
    results = await asyncio.gather(first, queued, return_exceptions=True)
    # Not a cancellation of callers nobody cancelled: an outage-like error they may retry.
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]


async def test_items_submitted_right_after_a_drain_ends_are_flushed() -> None:
    async def flush(items: Sequence[int]) -> dict[int, int]:
        return {item: item for item in items}

    batcher: Batcher[int, int | None] = Batcher(flush, missing=None)
    for round_ in range(50):  # each submit lands just as the previous drain ends
        assert await batcher.submit(round_) == round_
        assert await asyncio.gather(batcher.submit(1), batcher.submit(2)) == [1, 2]
