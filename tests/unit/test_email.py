"""The notification email: what build_message writes, read back as a mail client reads it."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import app.notify.email
from app.config import KEY_PATTERN
from app.notify import Notification, build_message, message_id_for
from app.notify.email import SUBJECT_NAME_CHARS, subject_name
from app.states import AGENT_PROMISE, CANCELLED_ERROR, PromiseState

MAIL_FROM = "Agent Notify <noreply@example.com>"
NOW = datetime(2026, 11, 26, 15, 4, 5, tzinfo=UTC)
PROVIDER_ERROR = (
    "AuthenticationError: litellm.AuthenticationError: AuthenticationError: OpenAIException - "
    "Incorrect API key provided: sk-wrong"
)


def resolved(value: object, *, key: str = "msg-123", to: str = "a@example.com") -> Notification:
    return Notification(
        to, "<1@example.com>", key, AGENT_PROMISE, PromiseState.RESOLVED, value, None
    )


def rejected(error: str | None, *, promise: str = AGENT_PROMISE) -> Notification:
    return Notification(
        "a@example.com", "<1@example.com>", "msg-123", promise, PromiseState.REJECTED, None, error
    )


def read_back(message: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage) -> str:
    """The plain text, as a mail client that shows no HTML reads it."""
    plain = message.get_body(("plain",))
    assert plain is not None
    content: str = plain.get_content()
    return content


def test_headers_and_a_json_value() -> None:
    notification = Notification(
        "b@example.com",
        "<2@example.com>",
        "k2",
        AGENT_PROMISE,
        PromiseState.RESOLVED,
        {"n": 1, "s": "ü"},
        None,
    )
    parsed = read_back(build_message(notification, mail_from=MAIL_FROM, now=NOW))
    assert parsed["To"] == "b@example.com"
    assert parsed["From"] == MAIL_FROM
    assert parsed["Message-ID"] == "<2@example.com>"
    assert parsed["Subject"] == "Your agent task k2 is ready"
    assert parsed["X-Agent-Notify-Key"] == "k2"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Date"].datetime == NOW
    assert text_of(parsed) == '{\n  "n": 1,\n  "s": "ü"\n}\n'


@pytest.mark.parametrize(
    "value", ["the answer", "the answer\n", "ünïcödé ✓", "x" * 2000, "line\n" * 300]
)
def test_a_string_value_is_the_body_as_is(value: str) -> None:
    parsed = read_back(build_message(resolved(value), mail_from=MAIL_FROM))
    assert text_of(parsed) == (value if value.endswith("\n") else value + "\n")


def test_a_failure_says_where_to_look_and_not_the_providers_message() -> None:
    parsed = read_back(build_message(rejected(PROVIDER_ERROR), mail_from=MAIL_FROM))
    assert parsed["Subject"] == "Your agent task msg-123 failed"
    body = text_of(parsed)
    assert body.startswith("Your agent task msg-123 could not be completed.\n")
    assert "GET /workflows/msg-123" in body
    assert "/ui/workflows/msg-123" in body
    for leak in ("AuthenticationError", "sk-wrong", "OpenAIException", "litellm"):
        assert leak not in body


@pytest.mark.parametrize("error", [None, "", "TypeError: 'NoneType' object is not iterable"])
def test_every_failure_of_the_agent_gets_the_same_plain_sentence(error: str | None) -> None:
    body = text_of(read_back(build_message(rejected(error), mail_from=MAIL_FROM)))
    expected = read_back(build_message(rejected(PROVIDER_ERROR), mail_from=MAIL_FROM))
    assert body == text_of(expected)


FOOTER = "-- \nSent by agent-notify to a@example.com, a subscriber of the agent task msg-123.\n"
SUPPLIED = (
    "agent-notify did not write the quoted text: whoever completed the promise supplied it\n"
    "through the service's API.\n"
)
PHISHING = "Your account is locked.\nVerify at http://phish.example/login\n\n-- \nYour bank"


def by_api(value: object, *, state: PromiseState = PromiseState.RESOLVED) -> Notification:
    """A promise other than the agent's, completed through the API (a rejection's reason is
    `value`)."""
    if state is PromiseState.REJECTED:
        value, error = None, str(value)
    else:
        error = None
    return Notification(
        "a@example.com", "<1@example.com>", "msg-123", "approval", state, value, error
    )


def test_a_promise_resolved_through_the_api_is_quoted_inside_the_services_frame() -> None:
    """Whatever text a caller resolves a promise with cannot pose as the service's message: it
    comes after the service's own heading, every line quoted, marked as supplied through the
    API, and before the footer every notification but the answer carries."""
    parsed = read_back(build_message(by_api(PHISHING), mail_from=MAIL_FROM))
    assert parsed["Subject"] == "Your agent task msg-123: approval was resolved"
    assert text_of(parsed) == (
        "The promise approval of your agent task msg-123 was resolved with:\n"
        "\n"
        "> Your account is locked.\n"
        "> Verify at http://phish.example/login\n"
        ">\n"
        "> -- \n"
        "> Your bank\n"
        "\n" + SUPPLIED + "\n" + FOOTER
    )


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ({"approved": True}, '> {\n>   "approved": true\n> }\n'),
        ("", ">\n"),
        ("one\r\ntwo\x0bthree\u2028four", "> one\n> two\n> three\n> four\n"),
    ],
    ids=["json", "empty", "line-breaks"],
)
def test_every_line_of_a_value_is_quoted(value: object, quoted: str) -> None:
    body = text_of(read_back(build_message(by_api(value), mail_from=MAIL_FROM)))
    assert body.split("\n\n")[1] + "\n" == quoted


def test_a_promise_rejected_through_the_api_quotes_its_reason_the_same_way() -> None:
    parsed = read_back(
        build_message(by_api(PHISHING, state=PromiseState.REJECTED), mail_from=MAIL_FROM)
    )
    assert parsed["Subject"] == "Your agent task msg-123: approval was rejected"
    body = text_of(parsed)
    assert body.startswith(
        "The promise approval of your agent task msg-123 was rejected, with the reason:\n\n"
        "> Your account is locked.\n"
    )
    assert body.endswith("\n" + SUPPLIED + "\n" + FOOTER)


def test_the_service_signs_what_it_writes_but_the_answer_is_the_whole_message() -> None:
    for notification in (rejected(PROVIDER_ERROR), rejected(CANCELLED_ERROR)):
        body = text_of(read_back(build_message(notification, mail_from=MAIL_FROM)))
        assert body.endswith("\n\n" + FOOTER)
        assert SUPPLIED not in body
    answer = text_of(read_back(build_message(resolved(PHISHING), mail_from=MAIL_FROM)))
    assert answer == PHISHING + "\n"


def test_a_cancelled_task() -> None:
    parsed = read_back(build_message(rejected(CANCELLED_ERROR), mail_from=MAIL_FROM))
    assert parsed["Subject"] == "Your agent task msg-123 was cancelled"
    assert text_of(parsed) == (
        "Your agent task msg-123 was cancelled before it finished.\n\n" + FOOTER
    )


@pytest.mark.parametrize(
    "mail_from",
    [
        MAIL_FROM,
        "noreply@example.com",
        "Ägent Nötify <noreply@example.com>",
        '"Agent, Notify" <noreply@example.com>',
        "A very long display name that will not fit on one line at all <noreply@example.com>",
    ],
)
def test_senders_are_written_so_that_they_read_back(mail_from: str) -> None:
    parsed = read_back(build_message(resolved("x"), mail_from=mail_from))
    expected = email.policy.default.header_factory("From", mail_from)
    assert parsed["From"].addresses == expected.addresses


@pytest.mark.parametrize(
    ("notification", "mail_from"),
    [
        (resolved("x"), "Agent\nBcc: victim@example.com <noreply@example.com>"),
        (resolved("x", to="me@example.com\r\nBcc: victim@example.com"), MAIL_FROM),
    ],
    ids=["From", "To"],
)
def test_a_header_with_a_line_break_is_refused(notification: Notification, mail_from: str) -> None:
    with pytest.raises(ValueError, match=r"linefeed|carriage return"):
        build_message(notification, mail_from=mail_from)


def test_the_message_id_is_fixed_by_the_subscription() -> None:
    subscription_id = "7b0c5a5e-8d7c-4c1c-9a53-2d0f4f3e2b11"
    assert message_id_for(subscription_id, MAIL_FROM) == f"<{subscription_id}@example.com>"
    assert message_id_for(subscription_id, "Agent <a@ex ample.com>") == (
        f"<{subscription_id}@example.com>"
    )
    assert message_id_for(subscription_id, "Agent <noreply@>") == (
        f"<{subscription_id}@agent-notify.invalid>"
    )


TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=300),
    st.lists(st.text(alphabet="ab \t=?", max_size=90), max_size=4).map("\n".join),
    st.text(alphabet="ab \t\r\n\x0b\x0c\x1c=?", max_size=120),
)


@settings(max_examples=200, deadline=None)
@given(
    subscription_id=st.uuids(),
    key=st.from_regex(KEY_PATTERN, fullmatch=True),
    value=st.one_of(TEXT, st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    address=st.emails(),
)
def test_any_answer_reads_back_with_its_headers(
    subscription_id: object, key: str, value: object, address: str
) -> None:
    message_id = message_id_for(str(subscription_id), MAIL_FROM)
    notification = Notification(
        address, message_id, key, AGENT_PROMISE, PromiseState.RESOLVED, value, None
    )
    parsed = read_back(build_message(notification, mail_from=MAIL_FROM))
    assert parsed["Message-ID"] == message_id
    assert parsed["X-Agent-Notify-Key"] == key
    assert parsed["To"].addresses[0].addr_spec == address
    assert parsed["Subject"] == f"Your agent task {subject_name(key)} is ready"


@pytest.mark.parametrize("length", [40, 41, 45, 100, 256])
def test_a_long_key_is_cut_in_the_subject_which_stays_on_one_line(length: int) -> None:
    key = "k" * length
    promises = [(AGENT_PROMISE, PromiseState.RESOLVED), ("p" * length, PromiseState.REJECTED)]
    for promise, state in promises:
        notification = Notification("a@b.co", "<1@x>", key, promise, state, "v", "no")
        message = build_message(notification, mail_from=MAIL_FROM)
        parsed = read_back(message)
        assert parsed["Subject"].startswith("Your agent task k")
        assert ("..." in parsed["Subject"]) is (length > SUBJECT_NAME_CHARS)
        lines = message.as_string().splitlines()
        subject_line = next(line for line in lines if line.startswith("Subject:"))
        assert subject_line.startswith("Subject: Your agent task k")  # on the header's line
        assert "=?" not in subject_line
        assert parsed["X-Agent-Notify-Key"] == key  # in full


@settings(max_examples=100, deadline=None)
@given(
    key=st.from_regex(KEY_PATTERN, fullmatch=True),
    value=TEXT,
    address=st.emails(),
    mail_from=st.sampled_from([MAIL_FROM, "agent-notify@localhost", "Zoë Ünïcode <z@example.com>"]),
)
def test_header_classes_made_once_write_the_bytes_the_standard_policy_writes(
    key: str, value: str, address: str, mail_from: str
) -> None:
    notification = Notification(
        address, "<1@example.com>", key, AGENT_PROMISE, PromiseState.RESOLVED, value, None
    )
    ours = build_message(notification, mail_from=mail_from, now=NOW).as_bytes()
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(app.notify.email, "POLICY", email.policy.default)
        standard = build_message(notification, mail_from=mail_from, now=NOW).as_bytes()
    assert ours == standard
