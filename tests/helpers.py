"""Waiting on conditions with a deadline, never on a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    condition: Callable[[T], bool],
    *,
    timeout: float = 10,
    interval: float = 0.02,
) -> T:
    """Call `probe` until `condition` holds on its result; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if condition(value):
                return value
            await asyncio.sleep(interval)


async def workflow_status(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await client.get(f"/workflows/{key}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_workflow(
    client: httpx.AsyncClient,
    key: str,
    condition: Callable[[dict[str, Any]], bool],
    timeout: float = 10,
) -> dict[str, Any]:
    return await eventually(lambda: workflow_status(client, key), condition, timeout=timeout)


def all_sent(status: dict[str, Any]) -> bool:
    subscriptions = status["subscriptions"]
    return bool(subscriptions) and all(s["status"] == "sent" for s in subscriptions)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def quoted_text(body: str) -> str:
    """The text a notification quotes (a promise's value or reason, supplied through the API),
    without its `> ` marks."""
    lines = [line for line in body.splitlines() if line.startswith(">")]
    return "\n".join(line.removeprefix(">").removeprefix(" ") for line in lines)


def plain_text(message: EmailMessage) -> str:
    """A notification's text/plain part, as a mail client that shows no HTML reads it."""
    part = message.get_body(("plain",))
    assert part is not None, "the message has no text/plain part"
    text: str = part.get_content()
    return text
