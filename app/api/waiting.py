"""Waiting on a client's behalf: at most MAX_WAIT_SECONDS, and only while it is still there.

Neither Starlette nor uvicorn cancels a handler whose client hangs up while it waits for a plain
(non-streaming) response: uvicorn tells only whoever awaits the request's `receive()`, which
then answers `http.disconnect`. So a handler that waits also awaits that, and whichever comes
first (the answer, the deadline, the hang-up) ends the wait. Ending it cancels the waiting
coroutine, whose watch on the listener is given back in a `finally`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

T = TypeVar("T")


async def within_wait(
    request: Request, waiting: Coroutine[Any, Any, T], *, timeout: float
) -> T | None:
    """`waiting`'s result; None if `timeout` seconds pass first. ClientDisconnect if the client
    hangs up first. Either way `waiting` is cancelled, and has ended, before this returns."""
    answer = asyncio.ensure_future(waiting)
    hang_up = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait((answer, hang_up), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        answer.cancel()
        hang_up.cancel()
        # Let both unwind (their finally blocks run) before the caller goes on.
        await asyncio.wait((answer, hang_up))
    if not answer.cancelled():
        return answer.result()  # an answer that raced the hang-up is still the answer
    if not hang_up.cancelled():
        raise ClientDisconnect()
    return None


async def _disconnected(receive: Receive) -> None:
    """Returns when the client hangs up. The body has been read by now (what is left of it, and
    the empty end-of-body message a GET gets, are passed over)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:
        # A receive channel that fails (a body over MAX_BODY_BYTES on a GET) cannot tell of a
        # hang-up any more: the wait goes on, bounded by its deadline.
        await asyncio.Event().wait()
