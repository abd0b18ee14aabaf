"""Who can be emailed: addresses the mail path cannot carry and recipients the operator does not
allow are refused at subscription; a target that still cannot be delivered fails on its first
attempt with one log line, and a traceback is logged only for a bug."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

import app.workflows.delivery
from tests.conftest import RunningApp
from tests.fakes.smtp import Inbox
from tests.helpers import until_workflow

INTERNATIONAL = "üser@exämple.com"


def failed(status: dict[str, Any]) -> bool:
    return bool(status["subscriptions"]) and status["subscriptions"][0]["status"] == "failed"


def worker_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the delivery machinery logged (the worker loop and the delivery worker)."""
    return [
        record
        for record in caplog.records
        if record.name in {"app.engine.worker", "app.workflows.delivery"}
    ]


@pytest.fixture
async def utf8_inbox() -> AsyncIterator[Inbox]:
    """An SMTP server that offers SMTPUTF8."""
    smtp = Inbox(smtputf8=True)
    await smtp.start()
    try:
        yield smtp
    finally:
        await smtp.stop()


async def test_an_internationalised_local_part_is_refused_unless_smtp_utf8(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await client.post("/workflows/intl/on_notify/send", json=INTERNATIONAL)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "non_ascii_address"
    assert "SMTP_UTF8=true" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM subscription") == 0
    # An internationalised domain alone needs nothing of the server: it travels as IDNA.
    accepted = await client.post("/workflows/intl/on_notify/send", json="user@exämple.com")
    assert accepted.status_code == 202
    assert accepted.json()["email"] == "user@xn--exmple-cua.com"


async def test_with_smtp_utf8_it_is_sent_with_its_domain_in_idna(
    start_app: Callable[..., Awaitable[RunningApp]], utf8_inbox: Inbox
) -> None:
    app = await start_app(smtp_utf8=True, smtp_port=utf8_inbox.port)
    await app.client.post("/workflows/intl/run", json="q")
    response = await app.client.post("/workflows/intl/on_notify", json=INTERNATIONAL)
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "üser@xn--exmple-cua.com"
    assert response.json()["status"] == "sent"
    [message] = utf8_inbox.messages
    assert message["To"] == "üser@xn--exmple-cua.com"


async def test_a_server_without_smtputf8_fails_it_at_once_in_one_line(
    start_app: Callable[..., Awaitable[RunningApp]],
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app = await start_app(smtp_utf8=True)
    await app.client.post("/workflows/intl/run", json="q")
    response = await app.client.post("/workflows/intl/on_notify", json=INTERNATIONAL)
    assert response.status_code == 424
    [subscription] = (await until_workflow(app.client, "intl", failed))["subscriptions"]
    assert subscription["attempts"] == 1
    assert "SMTPUTF8" in subscription["last_error"]
    [record] = worker_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert inbox.messages == []


@pytest.mark.parametrize(
    "stored",
    [
        "a b@example.com",  # not an address aiosmtplib puts on an SMTP command line
        "me@example.com\r\nBcc: victim@example.com",  # not one an email header can hold
    ],
    ids=["envelope", "header"],
)
async def test_a_target_invalid_for_email_fails_at_once_in_one_line(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    stored: str,
) -> None:
    """A subscription row holding an address that cannot be emailed (stored by an older
    release, or by hand): one attempt, one WARNING line, no traceback."""
    caplog.set_level(logging.INFO)
    await client.post("/workflows/odd/on_notify/send", json="placeholder@example.com")
    await db.execute("UPDATE subscription SET email = $1", stored)
    await client.post("/workflows/odd/run/send", json="q")
    [subscription] = (await until_workflow(client, "odd", failed))["subscriptions"]
    assert subscription["attempts"] == 1
    assert not subscription["last_error"].startswith("internal error")
    [record] = worker_records(caplog)
    assert (record.levelno, record.exc_info) == (logging.WARNING, None)
    assert "\n" not in record.getMessage()
    assert inbox.messages == []


async def test_retried_failures_log_one_line_per_attempt_without_traceback(
    client: httpx.AsyncClient, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    inbox.reply("busy@example.com", *["451 4.3.0 try again later"] * 4)
    await client.post("/workflows/busy/run", json="q")
    await client.post("/workflows/busy/on_notify/send", json="busy@example.com")
    [subscription] = (await until_workflow(client, "busy", failed))["subscriptions"]
    assert subscription["attempts"] == 4
    records = worker_records(caplog)
    assert [record.levelno for record in records] == [logging.INFO] * 3 + [logging.WARNING]
    assert all(record.exc_info is None for record in records)


async def test_a_bug_is_logged_with_its_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(app.workflows.delivery, "build_message", broken)
    await client.post("/workflows/bug/run", json="q")
    await client.post("/workflows/bug/on_notify/send", json="me@example.com")
    [subscription] = (await until_workflow(client, "bug", failed))["subscriptions"]
    assert subscription["last_error"] == "internal error: TypeError: a bug"
    [record] = [r for r in worker_records(caplog) if r.exc_info is not None]
    assert record.levelno == logging.ERROR


ALLOWED = "boss@example.com, *@Example.ORG, *@bücher.example"


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("boss@example.com", True),
        ("Boss@EXAMPLE.com", True),
        ("anyone@example.org", True),
        ("Anyone@EXAMPLE.ORG", True),
        ("leser@bücher.example", True),
        ("leser@xn--bcher-kva.example", True),
        ("other@example.com", False),
        ("someone@sub.example.org", False),
        ("someone@example.org.evil.com", False),
    ],
)
async def test_notify_allowed_recipients_limits_who_may_subscribe(
    start_app: Callable[..., Awaitable[RunningApp]],
    db: asyncpg.Connection,
    email: str,
    allowed: bool,
) -> None:
    app = await start_app(notify_allowed_recipients=ALLOWED)
    response = await app.client.post("/workflows/k/on_notify/send", json=email)
    if allowed:
        assert response.status_code == 202, response.text
        return
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "recipient_not_allowed"
    assert "NOTIFY_ALLOWED_RECIPIENTS" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM subscription") == 0


async def test_a_subscriber_no_longer_allowed_is_not_emailed(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    """Subscribed before the operator set the list: failed at delivery, with the reason."""
    before = await start_app()
    await before.client.post("/workflows/k/on_notify/send", json="me@example.com")
    await before.stop()
    after = await start_app(notify_allowed_recipients="*@example.org")
    await after.client.post("/workflows/k/run/send", json="q")
    [subscription] = (await until_workflow(after.client, "k", failed))["subscriptions"]
    assert "NOTIFY_ALLOWED_RECIPIENTS" in subscription["last_error"]
    assert inbox.messages == []
