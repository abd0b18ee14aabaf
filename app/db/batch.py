"""Coalescing: concurrent callers of one statement share a single execution of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)
Result = TypeVar("Result")

logger = logging.getLogger(__name__)


class Batcher(Generic[Item, Result]):
    """`await batcher.submit(item)` runs `flush(items)` for every item submitted meanwhile.

    Nothing waits to fill a batch: an item submitted while no flush runs is flushed at once,
    alone; those submitted while one runs go together in the next. So a quiet service pays
    no latency, and a busy one one statement and one commit for many items instead of one
    each. `flush` returns the result of each item it knows (an absent one gets `missing`);
    if it raises, every item of that batch gets the exception.
    """

    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[dict[Item, Result]]],
        *,
        missing: Result,
        max_batch: int = 100,
    ) -> None:
        self._flush = flush
        self._missing = missing
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._drain())
            self._flushing.add_done_callback(self._drained)
        return await future

    def _drained(self, task: asyncio.Task[None]) -> None:
        # Runs however the drain ended, even cancelled before its first step (when its own
        # `finally` never runs): what it left is failed, retryably, and the next submit starts
        # a new one.
        if self._flushing is not None and self._flushing is not task:
            return  # a new drain started meanwhile: what is pending is its own
        self._flushing = None
        for _, future in self._pending:
            if not future.done():
                future.set_exception(ConnectionError("the batch was interrupted"))
        self._pending.clear()

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    results = await self._flush([item for item, _ in batch])
                except BaseException as exc:
                    # A cancelled flush (the loop shutting down) is, to its callers, one that
                    # did not happen: an ordinary error, which they may retry.
                    error = (
                        exc
                        if isinstance(exc, Exception)
                        else ConnectionError("the batch was interrupted")
                    )
                    waiting = [future for _, future in batch if not future.done()]
                    for future in waiting:
                        future.set_exception(error)
                    if not waiting:
                        logger.warning("a batch failed with no caller left: %r", exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for item, future in batch:
                    if not future.done():
                        future.set_result(results.get(item, self._missing))
        finally:
            self._flushing = None
