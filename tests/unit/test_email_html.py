"""The notification email's HTML part and its links, read back as a mail client reads them."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from app.notify import MessageLinks, Notification, build_message
from app.states import AGENT_PROMISE, PromiseState
from tests.helpers import plain_text

MAIL_FROM = "Agent Notify <noreply@example.com>"
DASHBOARD = "https://notify.example.com/ui/workflows/msg-123"
UNSUBSCRIBE = "https://notify.example.com/unsubscribe/" + "A" * 32 + "." + "b" * 43
LINKS = MessageLinks(dashboard=DASHBOARD, unsubscribe=UNSUBSCRIBE)


def answer(value: object) -> Notification:
    return Notification(
        "a@example.com",
        "<1@example.com>",
        "msg-123",
        AGENT_PROMISE,
        PromiseState.RESOLVED,
        value,
        None,
    )


def read_back(message: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    text: str = part.get_content()
    return text


class Elements(HTMLParser):
    """The tags and attributes of a document, as a browser's parser finds them."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(document)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def hrefs(self) -> list[str | None]:
        return [attrs.get("href") for attrs in self.named("a")]


MARKDOWN = "# Durable execution\n\nIt is **durable**: see [the docs](https://example.com/docs).\n"


def test_multipart_alternative_with_the_plain_text_unchanged_and_the_markdown_as_html() -> None:
    parsed = read_back(build_message(answer(MARKDOWN), mail_from=MAIL_FROM))
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert plain_text(parsed) == MARKDOWN
    elements = Elements(html_of(parsed))
    assert elements.named("h1")
    assert elements.named("strong")
    assert elements.hrefs == ["https://example.com/docs"]
    assert elements.named("img") == []
    assert elements.named("script") == []
    assert "Durable execution" in "".join(elements.text)


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">click</a>',
        "<style>body{display:none}</style>",
    ],
)
def test_raw_html_in_the_answer_arrives_escaped(hostile: str) -> None:
    document = html_of(read_back(build_message(answer(f"Hi {hostile} there"), mail_from=MAIL_FROM)))
    elements = Elements(document)
    assert [tag for tag, _ in elements.tags if tag not in {"html", "head", "meta", "title"}] == [
        "body",
        "div",
        "p",
    ]
    assert hostile in "".join(elements.text)  # shown as text, as written


@pytest.mark.parametrize(
    "link",
    [
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "<javascript:alert(1)>",
        "[click](vbscript:msgbox)",
        "[click](data:text/html;base64,PHNjcmlwdD4=)",
        "[click](data:image/png;base64,iVBORw0KGgo=)",
        "[click](file:///etc/passwd)",
        "[click](/relative/path)",
        "[click](ftp://example.com/x)",
    ],
)
def test_only_http_https_and_mailto_links_are_links(link: str) -> None:
    document = html_of(read_back(build_message(answer(f"See {link}."), mail_from=MAIL_FROM)))
    assert Elements(document).hrefs == []


def test_http_https_and_mailto_links_are_kept() -> None:
    text = "[a](http://example.com/a) [b](HTTPS://example.com/b) [c](mailto:x@example.com)"
    document = html_of(read_back(build_message(answer(text), mail_from=MAIL_FROM)))
    assert Elements(document).hrefs == [
        "http://example.com/a",
        "HTTPS://example.com/b",
        "mailto:x@example.com",
    ]


def test_images_are_never_loaded() -> None:
    document = html_of(
        read_back(
            build_message(answer("![pixel](https://tracker.example/p.png)"), mail_from=MAIL_FROM)
        )
    )
    elements = Elements(document)
    assert elements.named("img") == []
    assert "https://tracker.example/p.png" not in str(elements.named("img"))


def test_text_supplied_through_the_api_is_quoted_escaped_and_not_rendered() -> None:
    supplied = "<b>Verify</b> at [your bank](https://phish.example/login)\n\n-- \nYour bank"
    notification = Notification(
        "a@example.com",
        "<1@example.com>",
        "msg-123",
        "approval",
        PromiseState.RESOLVED,
        supplied,
        None,
    )
    parsed = read_back(build_message(notification, mail_from=MAIL_FROM, links=LINKS))
    document = html_of(parsed)
    elements = Elements(document)
    assert elements.hrefs == [DASHBOARD, UNSUBSCRIBE]  # the service's own links only
    assert elements.named("b") == []
    [quote] = elements.named("blockquote")
    text = "".join(elements.text)
    assert "The promise approval of your agent task msg-123 was resolved with:" in text
    assert supplied in text
    assert "agent-notify did not write the quoted text" in text
    assert "Sent by agent-notify to a@example.com, a subscriber of the agent task msg-123." in text
    assert quote is not None


def test_the_dashboard_and_unsubscribe_links_only_when_given() -> None:
    without = read_back(build_message(answer("the answer"), mail_from=MAIL_FROM))
    assert Elements(html_of(without)).hrefs == []
    assert without["List-Unsubscribe"] is None
    assert without["List-Unsubscribe-Post"] is None

    with_links = read_back(build_message(answer("the answer"), mail_from=MAIL_FROM, links=LINKS))
    assert Elements(html_of(with_links)).hrefs == [DASHBOARD, UNSUBSCRIBE]
    assert plain_text(with_links) == "the answer\n"  # the plain text as it always was
    assert with_links["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert with_links["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_long_unsubscribe_address_stays_one_readable_url() -> None:
    """The standard folding would write it as encoded-words; a mail client wants the URL."""
    long_url = "https://a-rather-long-host-name.notify.example.com/unsubscribe/" + "x" * 120
    message = build_message(
        answer("x"), mail_from=MAIL_FROM, links=MessageLinks(unsubscribe=long_url)
    )
    raw = message.as_string()
    assert f"List-Unsubscribe: <{long_url}>\n" in raw
    assert "=?" not in raw.split("\n\n")[0]
    assert read_back(message)["List-Unsubscribe"] == f"<{long_url}>"


def test_a_resend_is_the_same_message() -> None:
    """The boundary is fixed by the parts: the same notification writes the same bytes."""
    now = datetime(2026, 12, 9, tzinfo=UTC)
    first = build_message(answer(MARKDOWN), mail_from=MAIL_FROM, now=now, links=LINKS)
    again = build_message(answer(MARKDOWN), mail_from=MAIL_FROM, now=now, links=LINKS)
    assert first.as_bytes() == again.as_bytes()
