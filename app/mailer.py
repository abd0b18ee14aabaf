"""Building notification emails and handing them to SMTP (aiosmtplib) or to an outbox folder."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib

from app.config import Settings
from app.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notification:
    """What one subscriber is owed: the promise's outcome for one workflow key."""

    email: str
    message_id: str
    workflow_key: str
    resolved: bool
    value: object
    error: str | None


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header's class once instead of per header.

    HeaderRegistry builds a new class (`type(...)`) every time a header is set; that was half
    the cost of building a notification. The classes it would build are identical, so one per
    header name serves every message.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            made = self._classes[key] = super().__getitem__(name)
        return made


# email.policy.default (what EmailMessage() uses), with the header classes made once.
POLICY = default_policy.clone(header_factory=_HeaderClasses())


def message_id_for(subscription_id: str, mail_from: str) -> str:
    """A Message-ID fixed by the subscription, so a re-send after a crash carries the same one."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "agent-notify.invalid"
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain) or "agent-notify.invalid"
    return f"<{subscription_id}@{domain}>"


def render_value(value: object) -> str:
    """The promise value as email text: a string as is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


# Header values that the policy writes back exactly as given: printable ASCII on one short line,
# with no encoded word in it (an address: a plain addr-spec; a Message-ID: `<local@domain>`).
# build_message stores these raw (Message.set_raw), which skips the policy's header parser: that
# parser was three quarters of the cost of building a notification. Any other value is parsed
# as before. tests/test_mailer.py holds the bytes to those of the standard policy.
_LINE = 78  # the default policy's max_line_length
_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9.-]+@[A-Za-z0-9.-]+>")
_STRUCTURED = {"to": _ADDRESS, "message-id": _MESSAGE_ID}
# A body sent as 7bit without change: ASCII, no carriage return, lines of at most 78 characters.
_PLAIN_BODY = re.compile(rf"(?:[\x00-\x09\x0b\x0c\x0e-\x7f]{{0,{_LINE}}}\n)*")


@functools.lru_cache(maxsize=32)
def _written_as_is(name: str, value: str) -> bool:
    """Whether the policy writes `value` back unchanged: parsed once per value (for From, the
    same on every message). A value with a line break raises, as `message[name] = value` does."""
    _name, header = POLICY.header_store_parse(name, value)
    folded: str = header.fold(policy=POLICY)
    return folded == f"{name}: {value}\n"


def _set_header(message: EmailMessage, name: str, value: str, *, constant: bool = False) -> None:
    if constant:
        plain = _written_as_is(name, value)
    else:
        plain = (
            len(name) + 2 + len(value) <= _LINE
            and _STRUCTURED.get(name.lower(), _TEXT).fullmatch(value) is not None
            and "=?" not in value
        )
    if plain:
        message.set_raw(name, value)
    else:
        message[name] = value


class _Notification(EmailMessage):
    """A notification; one whose headers and body are all stored as written (see above) is
    turned into bytes directly: the generator would parse its Content-Type back twice."""

    plain_body = False

    def as_bytes(self, unixfrom: bool = False, policy: Policy | None = None) -> bytes:
        body = self.get_payload()
        headers = list(self.raw_items())
        if (
            not self.plain_body
            or unixfrom
            or policy is not None
            or not isinstance(body, str)
            or not all(type(value) is str and "\n" not in value for _, value in headers)
        ):
            return super().as_bytes(unixfrom, policy)
        return "".join([*(f"{name}: {value}\n" for name, value in headers), "\n", body]).encode()


def build_message(
    notification: Notification, *, mail_from: str, now: datetime | None = None
) -> EmailMessage:
    if notification.resolved:
        subject = f"Your agent task {notification.workflow_key} is ready"
        body = render_value(notification.value)
    elif notification.error == "cancelled":
        subject = f"Your agent task {notification.workflow_key} was cancelled"
        body = "Your agent task was cancelled before it finished."
    else:
        subject = f"Your agent task {notification.workflow_key} failed"
        body = f"Your agent task failed: {notification.error or 'no reason recorded'}"
    if not body.endswith("\n"):
        body += "\n"
    message = _Notification(policy=POLICY)
    _set_header(message, "From", mail_from, constant=True)
    _set_header(message, "To", notification.email)
    _set_header(message, "Message-ID", notification.message_id)
    _set_header(message, "Date", format_datetime(now or datetime.now(UTC)))
    message.set_raw("Auto-Submitted", "auto-generated")
    _set_header(message, "X-Agent-Notify-Key", notification.workflow_key)
    _set_header(message, "Subject", subject)
    if _PLAIN_BODY.fullmatch(body):
        # What set_content writes for such a body, without parsing its own headers back.
        message.set_raw("Content-Type", 'text/plain; charset="utf-8"')
        message.set_raw("Content-Transfer-Encoding", "7bit")
        message.set_raw("MIME-Version", "1.0")
        message.set_payload(body)
        message.plain_body = True
    else:
        message.set_content(body)
    return message


class Mailer(Protocol):
    async def send(self, message: EmailMessage, *, recipient: str) -> None:
        """Deliver to `recipient` or raise TransientError / PermanentError."""

    async def close(self) -> None:
        """Release connections (at shutdown)."""

    @property
    def description(self) -> str: ...


class SmtpMailer:
    """Sends through an SMTP server with aiosmtplib, reusing connections.

    A connection is opened (EHLO, STARTTLS, login) once and kept for the next messages: that
    saves the handshake on every email. One idle for a while is checked with NOOP before use;
    one that failed in any way is closed, never reused.
    """

    IDLE_CHECK_SECONDS = 10.0
    IDLE_CLOSE_SECONDS = 60.0

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host is not None
        self._settings = settings
        self.description = f"SMTP {settings.smtp_host}:{settings.effective_smtp_port}"
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        # The EHLO name; asking the resolver for our FQDN on every message is slow.
        self._local_hostname = socket.getfqdn()
        self._sender = parseaddr(settings.mail_from)[1] or settings.mail_from

    async def send(self, message: EmailMessage, *, recipient: str) -> None:
        # The envelope is given, not parsed back out of the headers (which costs more than the
        # rest of the send).
        data = message.as_bytes()
        try:
            smtp = await self._connection()
            try:
                await smtp.sendmail(self._sender, [recipient], data)
            except BaseException:
                smtp.close()
                raise
            self._idle.append((smtp, time.monotonic()))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _classify_refusals(exc) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            # e.g. an internationalised address and a server without SMTPUTF8: retrying won't help
            raise PermanentError(f"SMTP server does not support this: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            reply = f"SMTP {exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                raise TransientError(reply) from exc
            raise PermanentError(reply) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"SMTP {type(exc).__name__}: {exc}") from exc

    async def _connection(self) -> aiosmtplib.SMTP:
        """An idle connection that still answers, else a new one."""
        now = time.monotonic()
        while self._idle:
            smtp, idle_since = self._idle.pop()
            idle = now - idle_since
            if not smtp.is_connected or idle > self.IDLE_CLOSE_SECONDS:
                smtp.close()
                continue
            if idle > self.IDLE_CHECK_SECONDS:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    smtp.close()
                    continue
            return smtp
        settings = self._settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.effective_smtp_port,
            username=settings.smtp_username or None,
            password=password,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
            local_hostname=self._local_hostname,
        )
        await smtp.connect()
        return smtp

    async def close(self) -> None:
        """Say goodbye on every idle connection (at shutdown)."""
        idle, self._idle = self._idle, []
        for smtp, _since in idle:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()


def _classify_refusals(exc: aiosmtplib.SMTPRecipientsRefused) -> Exception:
    codes = [refusal.code for refusal in exc.recipients]
    reply = "; ".join(f"SMTP {r.code} {r.message}" for r in exc.recipients)
    if codes and all(400 <= code < 500 for code in codes):
        return TransientError(reply)
    return PermanentError(reply)


class OutboxMailer:
    """Writes each message as an .eml file named by its Message-ID (a re-send overwrites it)."""

    def __init__(self, outbox_dir: Path) -> None:
        self._dir = outbox_dir
        self.description = f"outbox folder {outbox_dir}"

    async def send(self, message: EmailMessage, *, recipient: str) -> None:
        await asyncio.to_thread(self._write, message)

    async def close(self) -> None:
        pass

    def _write(self, message: EmailMessage) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9.@_-]", "", str(message["Message-ID"])) + ".eml"
        path = self._dir / name
        # Write then rename: a reader never sees half a message.
        with tempfile.NamedTemporaryFile("wb", dir=self._dir, delete=False, suffix=".tmp") as tmp:
            tmp.write(message.as_bytes())
        os.replace(tmp.name, path)
        logger.info("email to %s written to %s", message["To"], path)


def create_mailer(settings: Settings) -> Mailer:
    if settings.smtp_host:
        return SmtpMailer(settings)
    return OutboxMailer(settings.outbox_path)
