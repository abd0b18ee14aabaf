"""Handing emails over: SMTP replies sorted into transient and permanent, connections reused,
and the outbox folder when no SMTP server is configured."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.errors import OutcomeUnknown, PermanentError, TransientError
from app.notify import (
    Notification,
    OutboxMailer,
    SmtpMailer,
    build_message,
    create_mailer,
    message_id_for,
)
from app.states import AGENT_PROMISE, PromiseState
from tests.fakes.smtp import Inbox
from tests.helpers import plain_text

MAIL_FROM = "agent-notify <agent-notify@example.test>"


class CountingInbox(Inbox):
    """An Inbox that counts SMTP sessions (one EHLO each)."""

    sessions = 0

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname  # what aiosmtpd's own EHLO does when no hook is set
        return responses


@pytest.fixture
async def smtp_server() -> Any:
    server = CountingInbox()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def message_to(address: str, answer: str = "the answer") -> Any:
    notification = Notification(
        address,
        message_id_for(f"id-{address.partition('@')[0]}", MAIL_FROM),
        "msg-123",
        AGENT_PROMISE,
        PromiseState.RESOLVED,
        answer,
        None,
    )
    return build_message(notification, mail_from=MAIL_FROM)


def smtp_mailer(port: int, **settings: Any) -> SmtpMailer:
    return SmtpMailer(
        Settings(smtp_host="127.0.0.1", smtp_port=port, mail_from=MAIL_FROM, **settings)
    )


async def test_sends_over_one_reused_connection(smtp_server: CountingInbox) -> None:
    mailer = smtp_mailer(smtp_server.port)
    try:
        for address in ("a@example.com", "b@example.com", "c@example.com"):
            await mailer.send(message_to(address, f"for {address}"), recipient=address)
    finally:
        await mailer.close()
    messages = await smtp_server.wait_for(3)
    assert [m["To"] for m in messages] == ["a@example.com", "b@example.com", "c@example.com"]
    assert plain_text(messages[1]).strip() == "for b@example.com"
    assert smtp_server.sessions == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("451 4.3.0 try again later", TransientError),
        ("452 4.2.2 mailbox full", TransientError),
        ("550 5.1.1 mailbox unavailable", PermanentError),
        ("553 5.1.3 bad address", PermanentError),
    ],
)
async def test_a_refused_recipient(
    smtp_server: CountingInbox, reply: str, error: type[Exception]
) -> None:
    smtp_server.reply("x@example.com", reply)
    mailer = smtp_mailer(smtp_server.port)
    try:
        with pytest.raises(error, match=reply.split()[0]):
            await mailer.send(message_to("x@example.com"), recipient="x@example.com")
    finally:
        await mailer.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 queue full", TransientError), ("554 5.6.0 rejected", PermanentError)],
)
async def test_a_refused_message_and_the_connection_is_not_reused(
    smtp_server: CountingInbox, reply: str, error: type[Exception]
) -> None:
    smtp_server.reply_after_storing("x@example.com", reply)
    mailer = smtp_mailer(smtp_server.port)
    try:
        with pytest.raises(error, match=reply.split()[0]):
            await mailer.send(message_to("x@example.com"), recipient="x@example.com")
        await mailer.send(message_to("y@example.com"), recipient="y@example.com")
    finally:
        await mailer.close()
    assert smtp_server.sessions == 2


async def test_an_address_the_server_cannot_take_is_permanent(
    smtp_server: CountingInbox,
) -> None:
    # aiosmtpd does not offer SMTPUTF8 unless asked: an internationalised local part cannot go.
    mailer = smtp_mailer(smtp_server.port)
    try:
        with pytest.raises(PermanentError, match="does not support"):
            await mailer.send(message_to("ü@example.com"), recipient="ü@example.com")
    finally:
        await mailer.close()


async def test_the_final_reply_has_its_own_longer_timeout(smtp_server: CountingInbox) -> None:
    """Every other step times out after SMTP_TIMEOUT_SECONDS; the reply to the message itself
    may take up to SMTP_DATA_TIMEOUT_SECONDS."""
    held = smtp_server.hold_after_storing("slow@example.com")
    asyncio.get_running_loop().call_later(0.6, held.set)
    mailer = smtp_mailer(smtp_server.port, smtp_timeout_seconds=0.2, smtp_data_timeout_seconds=5)
    try:
        await mailer.send(message_to("slow@example.com"), recipient="slow@example.com")
        await mailer.send(message_to("next@example.com"), recipient="next@example.com")
    finally:
        await mailer.close()
    assert len(smtp_server.messages) == 2
    assert smtp_server.sessions == 1


async def test_no_final_reply_is_an_unknown_outcome(smtp_server: CountingInbox) -> None:
    smtp_server.hold_after_storing("void@example.com")
    mailer = smtp_mailer(smtp_server.port, smtp_timeout_seconds=0.2, smtp_data_timeout_seconds=0.4)
    try:
        with pytest.raises(OutcomeUnknown, match=r"no reply within 0\.4 s"):
            await mailer.send(message_to("void@example.com"), recipient="void@example.com")
        # The connection is not reused: its late reply would answer the next command.
        await mailer.send(message_to("next@example.com"), recipient="next@example.com")
    finally:
        await mailer.close()
    assert smtp_server.sessions == 2


async def test_a_connection_lost_after_the_message_is_an_unknown_outcome(
    smtp_server: CountingInbox,
) -> None:
    smtp_server.drop_after_storing("drop@example.com")
    mailer = smtp_mailer(smtp_server.port)
    try:
        with pytest.raises(OutcomeUnknown, match="connection was lost"):
            await mailer.send(message_to("drop@example.com"), recipient="drop@example.com")
    finally:
        await mailer.close()


async def test_a_slow_answer_before_the_message_is_an_ordinary_timeout(
    smtp_server: CountingInbox,
) -> None:
    """A server slow at RCPT has not been sent the message: a plain transient error."""
    smtp_server.hold_before_accepting("late@example.com")
    mailer = smtp_mailer(smtp_server.port, smtp_timeout_seconds=0.2)
    try:
        with pytest.raises(TransientError) as raised:
            await mailer.send(message_to("late@example.com"), recipient="late@example.com")
    finally:
        await mailer.close()
    assert not isinstance(raised.value, OutcomeUnknown)
    assert smtp_server.messages == []


async def test_an_unreachable_server_is_transient() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    mailer = smtp_mailer(port)
    with pytest.raises(TransientError, match="SMTP"):
        await mailer.send(message_to("a@example.com"), recipient="a@example.com")


async def test_the_outbox_writes_one_file_per_message_id(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path / "outbox")
    await mailer.send(message_to("a@example.com", "first"), recipient="a@example.com")
    await mailer.send(message_to("a@example.com", "again"), recipient="a@example.com")
    [written] = (tmp_path / "outbox").iterdir()
    assert written.name == "id-a@example.test.eml"
    parsed = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert plain_text(parsed) == "again\n"


def test_create_mailer_uses_smtp_only_when_configured(tmp_path: Path) -> None:
    assert isinstance(create_mailer(Settings(outbox_dir=tmp_path)), OutboxMailer)
    smtp = create_mailer(Settings(smtp_host="mail.example.test", smtp_starttls=True))
    assert isinstance(smtp, SmtpMailer)
    assert smtp.description == "SMTP mail.example.test:587"
