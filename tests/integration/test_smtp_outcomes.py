"""An SMTP server slow to confirm a message: the service waits for the final reply far longer
than for the rest of the exchange, and a message whose reply never came is an unknown outcome,
sent once more after a long delay (same Message-ID) and shown on the subscription."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.conftest import RunningApp
from tests.fakes.smtp import Inbox
from tests.helpers import until_workflow


def subscription(status: dict[str, Any]) -> dict[str, Any]:
    [only] = status["subscriptions"]
    return only


async def test_a_slow_final_reply_is_waited_for_not_sent_again(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    """The server takes the message and confirms it after three times SMTP_TIMEOUT_SECONDS:
    one email, sent, on the first attempt."""
    app = await start_app(smtp_timeout_seconds=0.5, smtp_data_timeout_seconds=30)
    held = inbox.hold_after_storing("slow@example.com")
    asyncio.get_running_loop().call_later(1.5, held.set)
    await app.client.post("/workflows/slow/run", json="q")
    response = await app.client.post("/workflows/slow/on_notify", json="slow@example.com")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["attempts"]) == ("sent", 1)
    assert body["outcome_unknown_at"] is None
    assert len(inbox.messages) == 1


async def test_no_final_reply_is_an_unknown_outcome_sent_once_more_then_given_up(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    """No reply within SMTP_DATA_TIMEOUT_SECONDS, twice: two copies (one Message-ID), the
    second after SMTP_UNKNOWN_RETRY_SECONDS, then the subscription fails saying why."""
    app = await start_app(
        smtp_timeout_seconds=0.3,
        smtp_data_timeout_seconds=0.5,
        smtp_unknown_retry_seconds=2.0,
        poll_interval_seconds=0.2,
    )
    inbox.hold_after_storing("void@example.com")
    await app.client.post("/workflows/void/run", json="q")
    await app.client.post("/workflows/void/on_notify/send", json="void@example.com")

    first = subscription(
        await until_workflow(
            app.client, "void", lambda s: subscription(s)["outcome_unknown_at"] is not None
        )
    )
    assert first["status"] == "ready"
    assert "unknown" in first["last_error"]
    assert len(inbox.messages) == 1

    final = subscription(
        await until_workflow(
            app.client, "void", lambda s: subscription(s)["status"] == "failed", timeout=15
        )
    )
    assert final["attempts"] == 2
    assert "twice" in final["last_error"]
    assert final["outcome_unknown_at"] == first["outcome_unknown_at"]
    assert [m["Message-ID"] for m in inbox.messages] == [final["message_id"]] * 2


async def test_a_connection_lost_after_the_message_then_an_accepted_resend(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    """The server hangs up after taking the message: unknown; the one re-send is accepted, so
    the subscription is sent, and still says that its outcome was once unknown."""
    app = await start_app(smtp_unknown_retry_seconds=1.0, poll_interval_seconds=0.2)
    inbox.drop_after_storing("drop@example.com")
    await app.client.post("/workflows/drop/run", json="q")
    await app.client.post("/workflows/drop/on_notify/send", json="drop@example.com")
    final = subscription(
        await until_workflow(app.client, "drop", lambda s: subscription(s)["status"] == "sent")
    )
    assert final["attempts"] == 2
    assert final["outcome_unknown_at"] is not None
    assert [m["Message-ID"] for m in inbox.messages] == [final["message_id"]] * 2
