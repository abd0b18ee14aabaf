"""The notification email: what one subscriber is owed, and the message that tells them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, parseaddr

from app.states import AGENT_PROMISE, CANCELLED_ERROR, PromiseState


@dataclass(frozen=True, slots=True)
class Notification:
    """What one subscriber is owed: the outcome of a completed promise of one workflow."""

    email: str
    message_id: str
    workflow_key: str
    promise: str  # its name; AGENT_PROMISE is the agent's answer
    state: PromiseState  # resolved or rejected
    value: object
    error: str | None


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header name's class once.

    HeaderRegistry builds a new class every time a header is set, about half the CPU of
    building a notification; the classes it builds for one name are identical.
    """

    def __init__(self) -> None:
        super().__init__()
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


def render_value(value: object) -> str:
    """The promise value as email text: a string as is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


# Said under text a caller supplied through the API (a promise's value or reason), so that no
# such text can pose as the service's own message (a phishing link resolved into a promise).
SUPPLIED_NOTE = (
    "agent-notify did not write the quoted text: whoever completed the promise supplied it\n"
    "through the service's API."
)


# The longest key or promise name a subject shows whole: a longer one is cut (the body and the
# X-Agent-Notify-Key header carry it in full), so that the Subject fits its line. The standard
# library folds a longer one badly: the whole text onto a continuation line (read back with a
# leading space), or a plain ASCII key as encoded-words.
SUBJECT_NAME_CHARS = 40


def subject_name(name: str) -> str:
    """`name` as a subject shows it."""
    if len(name) <= SUBJECT_NAME_CHARS:
        return name
    return name[: SUBJECT_NAME_CHARS - 3] + "..."


def subject_and_body(notification: Notification) -> tuple[str, str]:
    """What the email says.

    The agent's answer is the whole message. Everything else is the service speaking, in one
    template (`_body`): its own heading, then what the promise carries, then its footer. A
    promise other than the agent's is completed through the API, by any caller, with any text:
    that text is quoted and marked as theirs. The agent's failure is recorded as the
    provider's or the runtime's own words (with the model, the endpoint, part of a key): meant
    for operators, not recipients, so the email only says where to read it.
    """
    key, promise = notification.workflow_key, notification.promise
    named = subject_name(key)
    resolved = notification.state is PromiseState.RESOLVED
    if promise != AGENT_PROMISE:
        return (
            f"Your agent task {named}: {subject_name(promise)} was {notification.state}",
            _body(
                notification,
                f"The promise {promise} of your agent task {key} was "
                + ("resolved with:" if resolved else "rejected, with the reason:"),
                supplied=render_value(notification.value)
                if resolved
                else notification.error or "(no reason given)",
            ),
        )
    if resolved:
        answer = render_value(notification.value)
        return f"Your agent task {named} is ready", _body(notification, answer=answer)
    if notification.error == CANCELLED_ERROR:
        return (
            f"Your agent task {named} was cancelled",
            _body(notification, f"Your agent task {key} was cancelled before it finished."),
        )
    return (
        f"Your agent task {named} failed",
        _body(
            notification,
            f"Your agent task {key} could not be completed.\n"
            "\n"
            "The service recorded the reason; whoever runs the service can see it at\n"
            f"GET /workflows/{key} or on the dashboard at /ui/workflows/{key}.",
        ),
    )


def _body(
    notification: Notification,
    heading: str | None = None,
    *,
    answer: str | None = None,
    supplied: str | None = None,
) -> str:
    """The one template of every notification. With no heading, the agent's `answer` alone;
    else the heading, then text `supplied` through the API (every line quoted, and said to be
    theirs), then the footer."""
    if heading is None:
        return answer or ""
    parts = [heading]
    if supplied is not None:
        quoted = "\n".join(f"> {line}" if line else ">" for line in supplied.splitlines())
        parts += [quoted or ">", SUPPLIED_NOTE]
    parts.append(
        f"-- \nSent by agent-notify to {notification.email}, a subscriber of the agent task "
        f"{notification.workflow_key}."
    )
    return "\n\n".join(parts)


def build_message(
    notification: Notification, *, mail_from: str, now: datetime | None = None
) -> EmailMessage:
    """The email for `notification`, from `mail_from`. A header value with a line break in it
    raises ValueError (the email package refuses header injection)."""
    subject, body = subject_and_body(notification)
    message = EmailMessage(policy=POLICY)
    message["From"] = mail_from
    message["To"] = notification.email
    message["Message-ID"] = notification.message_id
    message["Date"] = format_datetime(now or datetime.now(UTC))
    # RFC 3834: an automatic message; well-behaved responders do not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Agent-Notify-Key"] = notification.workflow_key
    message["Subject"] = subject
    message.set_content(body if body.endswith("\n") else body + "\n")
    return message
