"""A run's gate around its model calls (app.agent's ModelGate): the model's pause, a slot of
its bucket, and the provider's 429 turned into a pause of the model for every run.

A 429 that says how long to wait (Retry-After, x-ratelimit-reset-*) pauses the model on every
replica, and the call is sent again after the pause, within the same step: the runs in flight
each get at most one 429, and none backs off on its own. A 429 that does not say, or the
MAX_PAUSES-th in a row, fails the call as before (the run's own retry with backoff).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.engine.flow import ModelFlow, Parked
from app.llm import ModelReply, retry_after_seconds

# 429s with a wait one call takes in a row before it fails as a transient error.
MAX_PAUSES = 5
# A provider's wait is trusted up to this long; beyond, the run's own retry takes over.
MAX_PAUSE_SECONDS = 600.0


class RunGate:
    def __init__(self, flow: ModelFlow, *, workflow_key: str, priority: int, parked: Parked):
        self._flow = flow
        self._workflow_key = workflow_key
        self._priority = priority
        self._parked = parked

    async def call(self, model: str, send: Callable[[], Awaitable[ModelReply]]) -> ModelReply:
        flow = self._flow
        pauses = 0
        while True:
            await flow.wait_unpaused(model, self._parked)
            async with flow.slot(
                model,
                workflow_key=self._workflow_key,
                priority=self._priority,
                parked=self._parked,
            ) as usage:
                if flow.paused_for(model):
                    continue  # paused while this call waited for its slot
                try:
                    reply = await send()
                except Exception as exc:
                    seconds = retry_after_seconds(exc)
                    if seconds is None or seconds > MAX_PAUSE_SECONDS or pauses >= MAX_PAUSES:
                        raise
                    pauses += 1
                    await flow.pause(model, seconds)
                    continue
                usage.tokens = reply.tokens
                return reply
