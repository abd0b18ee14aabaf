"""Handing notification emails to an SMTP server (aiosmtplib) or to an outbox folder."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import tempfile
import time
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal, Protocol

import aiosmtplib
from aiosmtplib.typing import Default

from app.config import Settings
from app.errors import OutcomeUnknown, PermanentError, TransientError

logger = logging.getLogger(__name__)

# Failures of the connection rather than replies of the server: worth another try.
_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


class Mailer(Protocol):
    async def send(self, message: EmailMessage, *, recipient: str) -> None:
        """Deliver to `recipient` or raise TransientError / PermanentError."""

    async def close(self) -> None:
        """Release connections (at shutdown)."""

    @property
    def description(self) -> str: ...


class _DataUnconfirmed(Exception):
    """The message was on its way to the server, whose reply never came."""


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, giving the message itself its own, longer timeout.

    RFC 5321 §4.5.3.2 gives the server 10 minutes to confirm a message (the reply that ends
    DATA) against a few for each other command. aiosmtplib's `send_message` sends the message
    with its public `data()`; here that call gets `data_timeout`. A timeout or a lost
    connection once DATA has begun cannot tell whether the server took the message: it raises
    _DataUnconfirmed, not an error worth a quick retry.
    """

    def __init__(self, *, data_timeout: float, **options: Any) -> None:
        super().__init__(**options)
        self.data_timeout = data_timeout

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,
    ) -> aiosmtplib.SMTPResponse:
        if not self.is_connected:
            # Lost before DATA: nothing was sent, and aiosmtplib says so.
            return await super().data(message, timeout=timeout)
        try:
            return await super().data(message, timeout=self.data_timeout)
        except aiosmtplib.SMTPTimeoutError as exc:
            raise _DataUnconfirmed(
                f"no reply within {self.data_timeout:g} s (SMTP_DATA_TIMEOUT_SECONDS)"
            ) from exc
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _DataUnconfirmed(f"the connection was lost before its reply ({exc})") from exc


class SmtpMailer:
    """Sends through an SMTP server with aiosmtplib, reusing connections.

    A connection is opened (EHLO, STARTTLS, login) once and kept for the next messages: that
    saves the handshake on every email. One idle for a while is checked with NOOP before use;
    one that failed in any way is closed, never reused.

    The server's reply to the message itself is waited for up to SMTP_DATA_TIMEOUT_SECONDS;
    without it the outcome is unknown (OutcomeUnknown), which the delivery worker retries once,
    late, rather than sending a copy per attempt.
    """

    IDLE_CHECK_SECONDS = 10.0
    IDLE_CLOSE_SECONDS = 60.0

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("SmtpMailer needs SMTP_HOST")
        self._settings = settings
        self.description = f"SMTP {settings.smtp_host}:{settings.effective_smtp_port}"
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        # The EHLO name; asking the resolver for our FQDN on every message is slow.
        self._local_hostname = socket.getfqdn()
        self._sender = parseaddr(settings.mail_from)[1] or settings.mail_from

    async def send(self, message: EmailMessage, *, recipient: str) -> None:
        try:
            smtp = await self._connection()
            try:
                # The envelope is given, so nothing is parsed back out of the headers;
                # aiosmtplib asks for SMTPUTF8 when the address needs it.
                await smtp.send_message(message, sender=self._sender, recipients=[recipient])
            except BaseException:
                smtp.close()
                raise
            self._idle.append((smtp, time.monotonic()))
        except _DataUnconfirmed as exc:
            raise OutcomeUnknown(
                f"the SMTP server was sent the message but did not confirm it: {exc}"
            ) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _classify_refusals(exc) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            # e.g. an internationalised address and a server without SMTPUTF8: retrying won't help
            raise PermanentError(f"SMTP server does not support this: {exc}") from exc
        except ValueError as exc:
            # aiosmtplib's word for an address (or its encoding, UnicodeEncodeError) that cannot
            # go on an SMTP command line: no attempt will do better.
            raise PermanentError(f"SMTP cannot carry this address: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            reply = f"SMTP {exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                raise TransientError(reply) from exc
            raise PermanentError(reply) from exc
        except _CONNECTION_ERRORS as exc:
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
                except _CONNECTION_ERRORS:
                    smtp.close()
                    continue
            return smtp
        settings = self._settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        smtp = _Client(
            data_timeout=settings.smtp_data_timeout_seconds,
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
            except _CONNECTION_ERRORS:
                smtp.close()


def _classify_refusals(exc: aiosmtplib.SMTPRecipientsRefused) -> Exception:
    """Transient only if every refusal is a 4xx (e.g. a full mailbox, greylisting)."""
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
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            # A full disk, a read-only or missing volume: worth another attempt later.
            raise TransientError(f"cannot write to the outbox {self._dir}: {exc}") from exc

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
    """SMTP when SMTP_HOST is set, else the outbox folder."""
    if settings.smtp_host:
        return SmtpMailer(settings)
    return OutboxMailer(settings.outbox_path)
