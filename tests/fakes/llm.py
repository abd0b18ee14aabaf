"""A fake OpenAI-compatible chat-completions server, so that litellm's own client code runs.

Answers `Answer to: <query>` at once, unless told to hold a query until released or to fail it
with given HTTP statuses first.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def answer_for(query: str) -> str:
    return f"Answer to: {query}"


@dataclass
class FakeLLM:
    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Each call's request headers (names lower-cased), in the order of `calls`.
    headers: list[dict[str, str]] = field(default_factory=list)
    _holds: dict[str, asyncio.Event] = field(default_factory=dict)
    _failures: dict[str, list[int]] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None
    # Each answer takes a random time in this range (seconds), like a real model.
    delay: tuple[float, float] = (0.0, 0.0)
    # Answers other than answer_for(query), per query.
    answers: dict[str, str] = field(default_factory=dict)
    # When set, every call waits for it (benchmarks hold all runs, then release them at once).
    held: asyncio.Event | None = None

    def queries(self) -> list[str]:
        return [call["messages"][-1]["content"] for call in self.calls]

    def calls_for(self, query: str) -> int:
        return self.queries().count(query)

    def hold(self, query: str) -> asyncio.Event:
        """Calls for `query` wait until the returned event is set."""
        event = asyncio.Event()
        self._holds[query] = event
        return event

    def fail(self, query: str, *statuses: int) -> None:
        """The next calls for `query` answer these HTTP statuses, in order."""
        self._failures[query] = list(statuses)

    async def wait_for_calls(self, query: str, count: int = 1, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.calls_for(query) >= count)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        query = body["messages"][-1]["content"]
        self.calls.append(body)
        self.headers.append({name.lower(): value for name, value in request.headers.items()})
        async with self._changed:
            self._changed.notify_all()
        statuses = self._failures.get(query)
        if statuses:
            status = statuses.pop(0)
            return web.json_response(
                {"error": {"message": f"fake failure {status}", "type": "fake", "code": status}},
                status=status,
            )
        hold = self._holds.get(query) or self.held
        if hold is not None:
            await hold.wait()
        if self.delay[1] > 0:
            await asyncio.sleep(random.uniform(*self.delay))
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.calls)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": self.answers.get(query, answer_for(query)),
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        for hold in self._holds.values():
            hold.set()
        if self._runner is not None:
            await self._runner.cleanup()
