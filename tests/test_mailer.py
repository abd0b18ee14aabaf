"""The notification email: what build_message writes."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from app import mailer
from app.mailer import Notification, build_message

MAIL_FROM = "Agent Notify <noreply@example.com>"

NOTIFICATIONS = [
    Notification("a@example.com", "<1@example.com>", "k1", True, "the answer\n", None),
    Notification("b@example.com", "<2@example.com>", "k2", True, {"n": 1, "s": "ü"}, None),
    Notification("c@example.com", "<3@example.com>", "k3", False, None, "BadRequestError: no"),
    Notification("d@example.com", "<4@example.com>", "k4", False, None, "cancelled"),
    Notification("e@example.com", "<5@example.com>", "k-ü", True, "x" * 2000, None),
]


@pytest.mark.parametrize("notification", NOTIFICATIONS, ids=lambda n: n.workflow_key)
def test_message_is_what_the_standard_policy_writes(
    notification: Notification, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mailer.POLICY only caches the header classes: the bytes are those of email.policy.default."""
    fast = build_message(notification, mail_from=MAIL_FROM)
    monkeypatch.setattr(mailer, "POLICY", email.policy.default)
    standard = build_message(notification, mail_from=MAIL_FROM)
    del fast["Date"], standard["Date"]
    assert fast.as_bytes() == standard.as_bytes()


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
