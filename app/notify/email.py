"""The notification email: the message that tells one subscriber, as plain text and HTML."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy, default
from email.utils import format_datetime, parseaddr

from app.notify.content import (
    SUBJECT_NAME_CHARS,
    Notification,
    content_of,
    plain_text,
    subject_name,
)
from app.notify.html import MessageLinks, html_part

__all__ = [
    "POLICY",
    "SUBJECT_NAME_CHARS",
    "MessageLinks",
    "build_message",
    "message_id_for",
    "subject_name",
]


class _UrlHeader(UnstructuredHeader, BaseHeader):
    """A header of URLs in angle brackets (RFC 2369's List-Unsubscribe): written on one line as
    it is. The standard folding would turn a URL longer than a line into encoded-words, which
    no mail client reads back as a URL; RFC 5322 allows lines of up to 998 characters."""

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header name's class once.

    HeaderRegistry builds a new class every time a header is set, about half the CPU of
    building a notification; the classes it builds for one name are identical.
    """

    def __init__(self) -> None:
        super().__init__()
        self.map_to_type("list-unsubscribe", _UrlHeader)
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        made = self._made.get(name.lower())
        if made is None:
            made = self._made[name.lower()] = super().__getitem__(name)
        return made


# email.policy.default, with header classes made once per name.
POLICY = default.clone(header_factory=_HeaderClasses())


def message_id_for(subscription_id: str, mail_from: str) -> str:
    """A Message-ID fixed by the subscription, so a re-send after a crash carries the same one."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "agent-notify.invalid"
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain) or "agent-notify.invalid"
    return f"<{subscription_id}@{domain}>"


def build_message(
    notification: Notification,
    *,
    mail_from: str,
    now: datetime | None = None,
    links: MessageLinks | None = None,
) -> EmailMessage:
    """The email for `notification`, from `mail_from`: multipart/alternative, the plain text
    and the HTML, with the `links` given (PUBLIC_URL's). A header value with a line break in it
    raises ValueError (the email package refuses header injection)."""
    links = links or MessageLinks()
    content = content_of(notification)
    subject, body = content.subject, plain_text(content)
    text = body if body.endswith("\n") else body + "\n"
    html = html_part(content, links)
    message = EmailMessage(policy=POLICY)
    message["From"] = mail_from
    message["To"] = notification.email
    message["Message-ID"] = notification.message_id
    message["Date"] = format_datetime(now or datetime.now(UTC))
    # RFC 3834: an automatic message; well-behaved responders do not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Agent-Notify-Key"] = notification.workflow_key
    message["Subject"] = subject
    if links.unsubscribe is not None:
        # RFC 8058: a mail client may unsubscribe with one POST of
        # `List-Unsubscribe=One-Click` to this address, without opening a page.
        message["List-Unsubscribe"] = f"<{links.unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text)
    # A boundary fixed by the parts (a re-send is the same message). "=_" never occurs in
    # quoted-printable or base64, and text would have to hold its own digest to contain it.
    digest = hashlib.sha256(f"{text}\0{html}".encode()).hexdigest()[:32]
    message.make_alternative(boundary=f"=_{digest}")
    message.add_alternative(html, subtype="html")
    return message
