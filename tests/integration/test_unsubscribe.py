"""HTML email links and one-click unsubscribe (RFC 8058), on real Postgres and a real SMTP
server: the links come from the emails the service sends, or are signed with the key it keeps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx

from app.notify import Links, Signer
from app.notify.links import UNSUBSCRIBE
from tests.conftest import RunningApp
from tests.fakes.llm import FakeLLM, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import eventually, plain_text, until_workflow

PUBLIC_URL = "https://notify.example.com/agent"
ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


def link_of(message: EmailMessage) -> str:
    """The address of the email's List-Unsubscribe header."""
    header = str(message["List-Unsubscribe"])
    assert header.startswith("<"), header
    assert header.endswith(">"), header
    return header[1:-1]


def path_of(link: str) -> str:
    assert link.startswith(PUBLIC_URL + "/unsubscribe/"), link
    return link.removeprefix(PUBLIC_URL)


async def stored_links(db: asyncpg.Connection) -> Links:
    """The links the service makes, with the key it keeps in the database."""
    secret = await db.fetchval("SELECT secret FROM signing_key WHERE name = 'links'")
    return Links(PUBLIC_URL, Signer(secret))


async def subscribe(client: httpx.AsyncClient, key: str, address: str) -> dict[str, Any]:
    response = await client.post(f"/workflows/{key}/on_notify/send", json=address)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def one_email(inbox: Inbox, address: str) -> EmailMessage:
    await eventually(lambda: asyncio.sleep(0, inbox.to(address)), lambda found: len(found) >= 1)
    [message] = inbox.to(address)
    return message


async def test_with_public_url_the_email_links_the_dashboard_and_unsubscribe(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox
) -> None:
    app = await start_app(public_url=PUBLIC_URL + "/")
    await app.client.post("/workflows/linked/run", json="# A heading\n\n<script>x</script>")
    await subscribe(app.client, "linked", "reader@example.com")
    message = await one_email(inbox, "reader@example.com")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = link_of(message)
    assert path_of(link).startswith("/unsubscribe/")
    html_part = message.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert f'href="{PUBLIC_URL}/ui/workflows/linked"' in html
    assert f'href="{link}"' in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    text = plain_text(message).replace("\r\n", "\n")
    assert text == answer_for("# A heading\n\n<script>x</script>") + "\n"


async def test_without_public_url_no_links_and_no_list_unsubscribe(
    client: httpx.AsyncClient, inbox: Inbox
) -> None:
    await client.post("/workflows/plain/run", json="q")
    await subscribe(client, "plain", "reader@example.com")
    message = await one_email(inbox, "reader@example.com")
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    html_part = message.get_body(("html",))
    assert html_part is not None
    assert "href=" not in html_part.get_content()


async def test_one_click_cancels_a_waiting_subscription_which_is_never_sent(
    start_app: Callable[..., Awaitable[RunningApp]],
    inbox: Inbox,
    fake_llm: FakeLLM,
    db: asyncpg.Connection,
) -> None:
    app = await start_app(public_url=PUBLIC_URL)
    release = fake_llm.hold("held")
    accepted = await app.client.post("/workflows/held/run/send", json="held")
    assert accepted.status_code == 202
    leaving = await subscribe(app.client, "held", "leaving@example.com")
    staying = await subscribe(app.client, "held", "staying@example.com")
    assert leaving["status"] == "waiting"
    links = await stored_links(db)
    link = links.unsubscribe(uuid.UUID(leaving["id"]), now=datetime.now(UTC))
    assert link is not None

    # Opening the link decides nothing: a page with a form, the subscription still waiting.
    page = await app.client.get(path_of(link), headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert '<form method="post">' in page.text
    assert "<script" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    status = await db.fetchval("SELECT status FROM subscription WHERE id = $1", leaving["id"])
    assert status == "waiting"

    # As a mail client sends it (RFC 8058): no Accept, a form body.
    response = await app.client.post(path_of(link), **ONE_CLICK)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled"] is True
    again = await app.client.post(path_of(link), **ONE_CLICK)
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    assert "Already unsubscribed" in again.json()["message"]

    release.set()
    await until_workflow(
        app.client,
        "held",
        lambda s: (
            {x["id"]: x["status"] for x in s["subscriptions"]}
            == {leaving["id"]: "cancelled", staying["id"]: "sent"}
        ),
    )
    await one_email(inbox, "staying@example.com")
    assert inbox.to("leaving@example.com") == []
    assert inbox.arrived.count("leaving@example.com") == 0


async def test_a_browser_unsubscribes_with_the_pages_form(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM, db: asyncpg.Connection
) -> None:
    app = await start_app(public_url=PUBLIC_URL)
    fake_llm.hold("browsed")
    await app.client.post("/workflows/browsed/run/send", json="browsed")
    subscription = await subscribe(app.client, "browsed", "reader@example.com")
    link = (await stored_links(db)).unsubscribe(
        uuid.UUID(subscription["id"]), now=datetime.now(UTC)
    )
    assert link is not None
    response = await app.client.post(
        path_of(link),
        content=b"",
        headers={"Accept": "text/html,application/xhtml+xml", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Unsubscribed" in response.text


async def test_forged_tampered_and_expired_links_are_refused(
    start_app: Callable[..., Awaitable[RunningApp]], fake_llm: FakeLLM, db: asyncpg.Connection
) -> None:
    app = await start_app(public_url=PUBLIC_URL)
    fake_llm.hold("guarded")
    await app.client.post("/workflows/guarded/run/send", json="guarded")
    subscription = await subscribe(app.client, "guarded", "reader@example.com")
    subscription_id = uuid.UUID(subscription["id"])
    links = await stored_links(db)
    now = datetime.now(UTC)
    good = path_of(links.unsubscribe(subscription_id, now=now) or "")
    payload, _, signature = good.removeprefix("/unsubscribe/").partition(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    other_payload = Signer(b"k" * 32).sign(UNSUBSCRIBE, uuid.uuid4(), expires_at=now).split(".")[0]
    refused = {
        "forged": Signer(b"x" * 32).sign(
            UNSUBSCRIBE, subscription_id, expires_at=now + timedelta(days=1)
        ),
        "tampered signature": f"{payload}.{flipped}",
        "another payload": f"{other_payload}.{signature}",
        "expired": links.signer.sign(
            UNSUBSCRIBE, subscription_id, expires_at=now - timedelta(seconds=1)
        ),
        "another purpose": links.signer.sign(
            "approve", subscription_id, expires_at=now + timedelta(days=1)
        ),
        "garbage": "not-a-token",
        "no signature": payload,
    }
    for what, token in refused.items():
        response = await app.client.post(f"/unsubscribe/{token}", **ONE_CLICK)
        assert response.status_code == 403, what
        assert response.json()["error"]["code"] == "invalid_token", what
        page = await app.client.get(f"/unsubscribe/{token}", headers={"Accept": "text/html"})
        assert page.status_code == 403, what
        assert "<form" not in page.text, what
    status = await db.fetchval("SELECT status FROM subscription WHERE id = $1", subscription_id)
    assert status == "waiting"


async def test_replicas_without_secret_key_share_one_key_and_the_link_needs_no_api_token(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox, db: asyncpg.Connection
) -> None:
    tokens = {"api_tokens": "test-token", "public_url": PUBLIC_URL}
    first, second = await asyncio.gather(start_app(**tokens), start_app(**tokens))
    assert await db.fetchval("SELECT count(*) FROM signing_key") == 1
    authorized = {"Authorization": "Bearer test-token"}
    run = await first.client.post("/workflows/shared/run", json="q", headers=authorized)
    assert run.status_code == 200
    response = await first.client.post(
        "/workflows/shared/on_notify/send", json="reader@example.com", headers=authorized
    )
    assert response.status_code == 202
    link = link_of(await one_email(inbox, "reader@example.com"))
    # The email from the first replica, its link followed on the second, without a token.
    answer = await second.client.post(path_of(link), **ONE_CLICK)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "sent"
    assert answer.json()["cancelled"] is False
    assert "already sent" in answer.json()["message"]
    page = await second.client.get(path_of(link))
    assert page.status_code == 200
    assert "<form" not in page.text


async def test_a_secret_key_signs_the_links_instead_of_the_stored_key(
    start_app: Callable[..., Awaitable[RunningApp]], inbox: Inbox, db: asyncpg.Connection
) -> None:
    app = await start_app(public_url=PUBLIC_URL, secret_key="an operator's secret")
    await app.client.post("/workflows/keyed/run", json="q")
    await subscribe(app.client, "keyed", "reader@example.com")
    link = link_of(await one_email(inbox, "reader@example.com"))
    token = link.rsplit("/", 1)[1]
    assert Signer.from_secret("an operator's secret").verify(UNSUBSCRIBE, token)
    assert await db.fetchval("SELECT count(*) FROM signing_key") == 0
    stranger = await start_app(public_url=PUBLIC_URL)  # no SECRET_KEY: the stored key
    refused = await stranger.client.post(path_of(link), **ONE_CLICK)
    assert refused.status_code == 403
