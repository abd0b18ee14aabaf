"""Python tools for the tests (AGENT_TOOLS=tests.fakes.tools): one that records each call, with
its step id, in the file TEST_TOOL_LOG names (so a test in another process can count calls),
one that fails, and one that returns only once `parties` calls have arrived (calls made one
after the other never would: it proves they ran at once)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from app.agent import ToolCallContext

__all__ = ["fail", "record", "rendezvous"]

LOG_VARIABLE = "TEST_TOOL_LOG"
_arrived: dict[str, int] = {}
_changed: dict[str, asyncio.Event] = {}


def record(label: str, context: ToolCallContext) -> str:
    """Record that the tool was called with `label`."""
    path = Path(os.environ[LOG_VARIABLE])
    with path.open("a", encoding="utf-8") as log:
        log.write(f"{label} {context.step_id} {context.workflow_key}\n")
    return f"recorded {label}"


def fail(reason: str) -> str:
    """Always fails, with `reason`."""
    raise RuntimeError(reason)


async def rendezvous(name: str, parties: int) -> str:
    """Returns once `parties` calls with this `name` have arrived."""
    _arrived[name] = _arrived.get(name, 0) + 1
    event = _changed.setdefault(name, asyncio.Event())
    event.set()
    async with asyncio.timeout(5):
        while _arrived[name] < parties:
            event.clear()
            await event.wait()
    return f"met {parties}"


def recorded(path: Path) -> list[tuple[str, str]]:
    """The (label, step id) of every call `record` logged in `path`."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(line.split()[0], line.split()[1]) for line in lines if line]
