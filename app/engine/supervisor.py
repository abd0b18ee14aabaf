"""Named background tasks that are restarted when they crash, never silently gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, *, restart_max_seconds: float = 10.0) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._crashed: set[str] = set()
        self._restart_max_seconds = restart_max_seconds

    @property
    def healthy(self) -> bool:
        """True when every supervised task is running (none is waiting to be restarted)."""
        return not self._crashed and all(not task.done() for task in self._tasks.values())

    def start(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._tasks[name] = asyncio.create_task(self._keep_running(name, factory), name=name)

    async def _keep_running(
        self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        delay = 0.1
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await factory()
                logger.error("background task %s returned; restarting it", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("background task %s crashed; restarting in %.1fs", name, delay)
            if loop.time() - started > 60:
                delay = 0.1  # it ran healthily for a while: this is a new failure, not a loop
            self._crashed.add(name)
            await asyncio.sleep(delay)
            self._crashed.discard(name)
            delay = min(delay * 2, self._restart_max_seconds)

    async def stop(self, *names: str) -> None:
        """Cancel the named tasks (all when none is named) and wait for them."""
        chosen = [
            self._tasks.pop(name) for name in (names or list(self._tasks)) if name in self._tasks
        ]
        for task in chosen:
            task.cancel()
        for task in chosen:
            with contextlib.suppress(asyncio.CancelledError):
                await task
