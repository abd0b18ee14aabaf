"""Example tools, for trying the agent loop (`AGENT_TOOLS=app.agent.examples`): arithmetic and
the current time. With the offline model and AGENT_TOOLS unset, the service loads them, so a
query like "add 2 and 3, then multiply the result by 4" shows a run of several steps."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["add", "current_time", "multiply"]


def add(a: float, b: float) -> float:
    """Add two numbers: a + b."""
    return _plain(a + b)


def multiply(a: float, b: float) -> float:
    """Multiply two numbers: a × b."""
    return _plain(a * b)


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in an IANA time zone (e.g. `Europe/Paris`), as ISO 8601."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {timezone!r}; use an IANA name") from exc
    return datetime.now(zone).isoformat(timespec="seconds")


def _plain(number: float) -> float:
    """5.0 as 5: whole results read as whole numbers."""
    return int(number) if number.is_integer() else number
