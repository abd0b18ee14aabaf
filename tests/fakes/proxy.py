"""An HTTP proxy on 127.0.0.1 in front of the service that can fail on cue: answer 503 (with a
Retry-After) without forwarding, forward a request and then lose the answer (the connection
dropped before the client reads a byte), or cut a streamed answer after its first chunk — the
network failures a client must retry through."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

Fault = Literal["503", "drop", "cut"]
# Hop-by-hop headers, and those aiohttp sets itself.
SKIPPED = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class Forwarded:
    method: str
    path: str
    idempotency_key: str | None
    status: int | None  # the service's answer; None: not forwarded (a 503 of the proxy's)


class FlakyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[Forwarded] = []
        self._faults: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, *faults: Fault) -> None:
        """The next requests meet these faults, in order; then they pass."""
        self._faults.extend(faults)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._faults.popleft() if self._faults else None
        key = request.headers.get("Idempotency-Key")
        if fault == "503":
            self.requests.append(Forwarded(request.method, request.path, key, None))
            return web.json_response(
                {"error": {"code": "shutting_down", "message": "try another replica"}},
                status=503,
                headers={"Retry-After": "0"},
            )
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIPPED}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
        ) as answer:
            self.requests.append(Forwarded(request.method, request.path, key, answer.status))
            if fault == "drop":
                await answer.read()  # the service answered in full; the client hears nothing
                self._abort(request)
            response = web.StreamResponse(
                status=answer.status,
                headers={k: v for k, v in answer.headers.items() if k.lower() not in SKIPPED},
            )
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
                if fault == "cut":
                    self._abort(request)
            await response.write_eof()
            return response

    @staticmethod
    def _abort(request: web.Request) -> None:
        assert request.transport is not None
        request.transport.abort()
        raise ConnectionResetError("the proxy dropped the connection")

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
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
        if self._session is not None:
            await self._session.close()
