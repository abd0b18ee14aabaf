"""Transitional: app.main and app.durable.runner import the agent from here until they are
switched to app.llm (issue 15); delete this module then. New code imports app.llm."""

from __future__ import annotations

from app.config import Settings
from app.llm import Agent as _Agent
from app.llm import ModelClient


class Agent(_Agent):
    """`app.llm.Agent` on a ModelClient of its own, built as app.main builds it today."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(ModelClient(settings))

    async def aclose(self) -> None:
        await self.client.aclose()
