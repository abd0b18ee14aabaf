"""The notification email: what build_message writes."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import KEY_PATTERN
from app.mailer import Notification, build_message, message_id_for, render_value

MAIL_FROM = "Agent Notify <noreply@example.com>"

NOTIFICATIONS = [
    Notification("a@example.com", "<1@example.com>", "k1", True, "the answer\n", None),
    Notification("b@example.com", "<2@example.com>", "k2", True, {"n": 1, "s": "ü"}, None),
    Notification("c@example.com", "<3@example.com>", "k3", False, None, "BadRequestError: no"),
    Notification("d@example.com", "<4@example.com>", "k4", False, None, "cancelled"),
    Notification("e@example.com", "<5@example.com>", "k-ü", True, "x" * 2000, None),
]


def standard_message(notification: Notification, *, mail_from: str, now: datetime) -> bytes:
    """The notification as the email package writes it with its standard policy: what
    build_message wrote before it skipped the header parser for plain values."""
    message = EmailMessage(policy=email.policy.default)
    message["From"] = mail_from
    message["To"] = notification.email
    message["Message-ID"] = notification.message_id
    message["Date"] = format_datetime(now)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Agent-Notify-Key"] = notification.workflow_key
    if notification.resolved:
        message["Subject"] = f"Your agent task {notification.workflow_key} is ready"
        body = render_value(notification.value)
    elif notification.error == "cancelled":
        message["Subject"] = f"Your agent task {notification.workflow_key} was cancelled"
        body = "Your agent task was cancelled before it finished."
    else:
        message["Subject"] = f"Your agent task {notification.workflow_key} failed"
        body = f"Your agent task failed: {notification.error or 'no reason recorded'}"
    message.set_content(body if body.endswith("\n") else body + "\n")
    return message.as_bytes()


NOW = datetime(2026, 11, 26, 15, 4, 5, tzinfo=UTC)
SENDERS = [
    MAIL_FROM,
    "noreply@example.com",
    "Ägent Nötify <noreply@example.com>",
    '"Agent, Notify" <noreply@example.com>',
    "A very long display name that will not fit on one line at all <noreply@example.com>",
    # Printable ASCII that the standard policy rewrites: the check is its own, not a pattern.
    '"A\\gent" <noreply@example.com>',
    "x@example.com (Agent \\Notify)",
    "Agent: <noreply@example.com>",
    # A line break: refused when the message is built, as the standard policy refuses it.
    "Agent\x0bNotify <noreply@example.com>",
]


def assert_standard(notification: Notification, *, mail_from: str, now: datetime) -> None:
    """build_message writes the bytes the standard policy writes, or refuses what it refuses."""
    try:
        expected = standard_message(notification, mail_from=mail_from, now=now)
    except Exception as exc:
        with pytest.raises(type(exc)):
            build_message(notification, mail_from=mail_from, now=now).as_bytes()
        return
    assert build_message(notification, mail_from=mail_from, now=now).as_bytes() == expected


@pytest.mark.parametrize("mail_from", SENDERS)
@pytest.mark.parametrize("notification", NOTIFICATIONS, ids=lambda n: n.workflow_key)
def test_message_is_what_the_standard_policy_writes(
    notification: Notification, mail_from: str
) -> None:
    assert_standard(notification, mail_from=mail_from, now=NOW)


def test_plain_message_takes_the_short_way() -> None:
    """The common case (plain headers, a short ASCII answer) skips the parser entirely: every
    header is stored as written, and the bytes are not made by the generator."""
    message = build_message(NOTIFICATIONS[0], mail_from=MAIL_FROM, now=NOW)
    assert all(type(value) is str for _, value in message.raw_items())
    assert (
        message.as_bytes()
        == bytes(message)
        == standard_message(NOTIFICATIONS[0], mail_from=MAIL_FROM, now=NOW)
    )
    # Once a header is set the usual way, the generator writes it.
    message.replace_header("Subject", "Ünïcode")
    assert b"Subject: =?utf-8?" in message.as_bytes()


ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=12)
ADDRESSES = st.one_of(
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        ATOM,
        st.sampled_from(["example.com", "a-b.example", "x"]),
    ),
    st.emails(),
    st.sampled_from(
        ["ü@example.com", "a@bü.example", '"a b"@example.com', "=?utf-8?q?abc?=@example.com"]
    ),
    st.text(min_size=1, max_size=90),
)
TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=300),
    st.lists(st.text(alphabet="ab \t=?", max_size=90), max_size=4).map("\n".join),
    st.text(alphabet="ab \t\r\n\x00\x0b\x0c\x1c=?", max_size=120),
    st.text(alphabet="ab\n\x85", max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(
    email_=ADDRESSES,
    message_id=st.one_of(
        st.builds(lambda u: message_id_for(str(u), MAIL_FROM), st.uuids()),
        st.text(max_size=40),
    ),
    key=st.from_regex(KEY_PATTERN, fullmatch=True),
    resolved=st.booleans(),
    value=st.one_of(TEXT, st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    error=st.one_of(st.none(), st.just("cancelled"), TEXT),
    mail_from=st.sampled_from(SENDERS),
    now=st.datetimes(min_value=datetime(1970, 1, 2), timezones=st.just(UTC)),
)
def test_any_message_is_what_the_standard_policy_writes(
    email_: str,
    message_id: str,
    key: str,
    resolved: bool,
    value: object,
    error: str | None,
    mail_from: str,
    now: datetime,
) -> None:
    assert_standard(
        Notification(email_, message_id, key, resolved, value, error), mail_from=mail_from, now=now
    )


def test_message_headers_and_body() -> None:
    sent = build_message(NOTIFICATIONS[1], mail_from=MAIL_FROM).as_bytes()
    parsed = email.message_from_bytes(sent, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["To"] == "b@example.com"
    assert parsed["From"] == MAIL_FROM
    assert parsed["Message-ID"] == "<2@example.com>"
    assert parsed["Subject"] == "Your agent task k2 is ready"
    assert parsed["X-Agent-Notify-Key"] == "k2"
    assert parsed["Date"]
    body = parsed.get_content()
    assert body == '{\n  "n": 1,\n  "s": "ü"\n}\n'
