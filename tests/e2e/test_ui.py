"""The dashboard (/ui), end to end in a real browser: Debian's chromium driven by Playwright,
against the service on the real Postgres, SMTP server and fake LLM.

Screenshots go to each test's tmp_path (or to $UI_SCREENSHOTS when set, to collect them).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

try:
    from playwright.async_api import Browser, Locator, Page, async_playwright, expect
except ImportError:  # without the dev extra the browser tests skip; the others still run
    async_playwright = None  # type: ignore[assignment]
    expect = None  # type: ignore[assignment]

from tests.conftest import RunningApp
from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls, Usage, answer_for
from tests.fakes.smtp import Inbox
from tests.helpers import all_sent, plain_text, quoted_text, until_workflow

ASSETS = Path(__file__).resolve().parents[2] / "app" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Waits for what the page shows: long enough for a loaded CI machine, far below the refresh
# intervals' sum, so a test that passes saw the live updates.
SHOWN_WITHIN_MS = 10_000

StartApp = Callable[..., Awaitable[RunningApp]]


# --- without a browser: the routes, headers and links ---


async def test_the_root_and_the_docs_lead_to_the_dashboard(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.status_code == 307
    assert root.headers["location"] == "/ui"
    page = await client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in page.text
    # Nothing from elsewhere: every asset is the service's own, and the policy says so.
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ASSETS.rglob("*"):
        if asset.suffix in {".html", ".js", ".css"}:
            assert "://" not in asset.read_text(), f"{asset} loads something from elsewhere"
    spec = (await client.get("/openapi.json")).json()
    assert "(/ui)" in spec["info"]["description"]
    assert not any(path.startswith("/ui") for path in spec["paths"])


async def test_the_assets_are_served_by_the_service(client: httpx.AsyncClient) -> None:
    for asset, media_type in (
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        response = await client.get(f"/ui/static/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(media_type), asset
        assert response.headers["cache-control"] == "no-cache"
    assert (await client.get("/ui/static/missing.js")).status_code == 404
    assert (await client.get("/ui/static/../../main.py")).status_code == 404
    detail = await client.get("/ui/workflows/msg-123")
    assert detail.status_code == 200
    assert detail.text == (await client.get("/ui")).text
    assert (await client.get("/ui/workflows/not%20a%20key")).status_code == 422


async def test_the_page_needs_no_token_but_the_api_still_does(start_app: StartApp) -> None:
    app = await start_app(api_tokens="ui-secret")
    assert (await app.client.get("/ui")).status_code == 200
    assert (await app.client.get("/ui/static/app.js")).status_code == 200
    assert (await app.client.get("/workflows")).status_code == 401


# --- in the browser ---

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() or async_playwright is None,
    reason=(
        "the dashboard's browser tests need Debian's chromium at /usr/bin/chromium "
        "(apt-get install chromium; .ci/run installs it when it can) and Playwright "
        "(pip install -e '.[dev]')"
    ),
)
if expect is not None:
    expect.set_options(timeout=SHOWN_WITHIN_MS)


@pytest.fixture
def screenshots(tmp_path: Path) -> Callable[[str], Path]:
    folder = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def path(name: str) -> Path:
        return folder / f"{name}.png"

    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"the page's script failed: {errors}"


async def open_page(page: Page, url: str) -> list[str]:
    """Open `url`, mark the document (a reload would lose the mark) and record the event
    streams the page reads."""
    streams: list[str] = []
    page.on(
        "request",
        lambda request: streams.append(request.url) if request.url.endswith("/events") else None,
    )
    await page.goto(url)
    await page.evaluate("window.loadedOnce = true")
    return streams


async def not_reloaded(page: Page) -> bool:
    return bool(await page.evaluate("window.loadedOnce === true"))


def row(page: Page, key: str) -> Locator:
    return page.locator(f'#workflow-rows tr[data-key="{key}"]')


def subscription(page: Page, email: str) -> Locator:
    return page.locator(f'#subscription-rows tr[data-email="{email}"]')


@needs_chromium
async def test_start_a_run_from_the_page_and_watch_it_finish_live(
    start_app: StartApp,
    fake_llm: FakeLLM,
    inbox: Inbox,
    page: Page,
    screenshots: Callable[[str], Path],
) -> None:
    app = await start_app()
    query = "Explain durable promises in one line"
    release = fake_llm.hold(query)
    streams = await open_page(page, f"{app.base_url}/ui")

    await page.fill("#start-key", "ui-live")
    await page.fill("#start-query", query)
    await page.fill("#start-email", "watcher@example.com")
    await page.click("#start-form button[type=submit]")
    await expect(page.locator("#start-result")).to_contain_text("Started ui-live")
    await expect(page.locator("#start-result")).to_contain_text("watcher@example.com")
    await expect(row(page, "ui-live").locator(".badge")).to_have_text("running")
    await expect(row(page, "ui-live").locator(".subscribers")).to_have_text("1")
    await expect(row(page, "ui-live").locator(".notified")).to_have_text("0")
    await expect(row(page, "ui-live").locator(".query")).to_have_text(query)
    await page.screenshot(path=screenshots("list-running"), full_page=True)

    release.set()
    await expect(row(page, "ui-live").locator(".badge")).to_have_text("succeeded")
    await expect(row(page, "ui-live").locator(".notified")).to_have_text("1")
    assert await not_reloaded(page)
    assert any(url.endswith("/workflows/ui-live/events") for url in streams), streams
    await inbox.wait_for_arrival("watcher@example.com")
    # The strip: rates from two samples of /metrics, the median from the histogram.
    await expect(page.locator("#stat-latency")).to_have_text(re.compile(r"^[0-9.]+ s$"))
    await expect(page.locator("#stat-workflows")).to_have_text(re.compile(r"^[0-9.]+$"))
    await page.screenshot(path=screenshots("list-succeeded"), full_page=True)

    await row(page, "ui-live").locator("a").click()
    await expect(page).to_have_url(f"{app.base_url}/ui/workflows/ui-live")
    await expect(page.locator("#detail-status")).to_have_text("succeeded")
    await expect(page.locator("#detail-output")).to_have_text(answer_for(query))
    watcher = subscription(page, "watcher@example.com")
    await expect(watcher.locator(".badge")).to_have_text("sent")
    message_id = inbox.to("watcher@example.com")[0]["Message-ID"]
    await expect(watcher.locator(".message-id")).to_have_text(message_id)
    timeline = page.locator("#detail-timeline")
    for step in ("accepted", "running", "succeeded", "email sent"):
        await expect(timeline).to_contain_text(step)
    await expect(timeline).to_contain_text(message_id)
    assert await not_reloaded(page)
    await page.screenshot(path=screenshots("detail-succeeded"), full_page=True)


@needs_chromium
async def test_a_workflow_page_follows_the_run_and_completes_a_promise_by_hand(
    start_app: StartApp,
    fake_llm: FakeLLM,
    inbox: Inbox,
    page: Page,
    screenshots: Callable[[str], Path],
) -> None:
    app = await start_app()
    query = "Draft the release notes"
    release = fake_llm.hold(query)
    assert (await app.client.post("/workflows/ui-approve/run/send", json=query)).status_code == 202
    await open_page(page, f"{app.base_url}/ui/workflows/ui-approve")
    await expect(page.locator("#detail-status")).to_have_text("running")
    await expect(page.locator("#detail-live")).to_contain_text("live")
    await expect(page.locator("#detail-query")).to_have_text(query)
    await expect(page.locator("#cancel-button")).to_be_visible()

    # Subscribe through the page: one to the agent's answer, one to a promise a person resolves.
    await page.fill("#subscribe-email", "reader@example.com")
    await page.click("#subscribe-form button[type=submit]")
    await expect(page.locator("#subscribe-result")).to_contain_text("reader@example.com")
    await page.fill("#subscribe-email", "Boss@Example.com")
    await page.fill("#subscribe-promise", "approval")
    await page.click("#subscribe-form button[type=submit]")
    await expect(subscription(page, "boss@example.com").locator(".badge")).to_have_text("waiting")
    await expect(page.locator('#promise-rows tr[data-promise="approval"]')).to_contain_text(
        "pending"
    )
    await page.fill("#subscribe-email", "not an address")
    await page.click("#subscribe-form button[type=submit]")
    await expect(page.locator("#subscribe-result")).to_contain_text("422 invalid_email")

    release.set()
    await expect(page.locator("#detail-status")).to_have_text("succeeded")
    await expect(page.locator("#detail-output")).to_have_text(answer_for(query))
    await expect(subscription(page, "reader@example.com").locator(".badge")).to_have_text("sent")
    await expect(page.locator("#cancel-button")).to_be_hidden()

    # The agent's own promise cannot be completed from outside: the refusal is shown as it is.
    await page.fill("#promise-name", "agent_response")
    await page.click("#promise-form button[data-action=resolve]")
    await expect(page.locator("#promise-result")).to_contain_text("409")
    # A value that is not JSON is caught before anything is sent.
    await page.fill("#promise-name", "approval")
    await page.fill("#promise-value", "yes please")
    await page.click("#promise-form button[data-action=resolve]")
    await expect(page.locator("#promise-result")).to_contain_text("must be JSON")

    await page.fill("#promise-value", '{"approved": true, "by": "<b>Boss</b>"}')
    await page.click("#promise-form button[data-action=resolve]")
    await expect(page.locator("#promise-result")).to_contain_text("approval is resolved")
    approval = page.locator('#promise-rows tr[data-promise="approval"]')
    await expect(approval.locator(".badge")).to_have_text("resolved")
    await expect(approval).to_contain_text('"by": "<b>Boss</b>"')
    await expect(subscription(page, "boss@example.com").locator(".badge")).to_have_text("sent")
    await inbox.wait_for_arrival("boss@example.com")
    body = plain_text(inbox.to("boss@example.com")[0])
    assert json.loads(quoted_text(body)) == {"approved": True, "by": "<b>Boss</b>"}

    await page.fill("#promise-name", "legal-review")
    await page.fill("#promise-error", "legal said no")
    await page.click("#promise-form button[data-action=reject]")
    await expect(page.locator('#promise-rows tr[data-promise="legal-review"]')).to_contain_text(
        "legal said no"
    )
    await expect(page.locator("#detail-timeline")).to_contain_text("approval resolved")
    assert await not_reloaded(page)
    await page.screenshot(path=screenshots("detail-promises"), full_page=True)


@needs_chromium
async def test_a_failed_workflow_shows_why_and_text_stays_text(
    start_app: StartApp,
    fake_llm: FakeLLM,
    page: Page,
    screenshots: Callable[[str], Path],
) -> None:
    app = await start_app()
    failing = "Summarise <img src=x onerror=\"window.injected = 'query'\">"
    fake_llm.fail(failing, 400)
    marked_up = "A plain question"
    fake_llm.answers[marked_up] = "<script>window.injected = 'output'</script><b>not bold</b>"
    await app.client.post("/workflows/ui-failed/run/send", json=failing)
    await app.client.post("/workflows/ui-markup/run/send", json=marked_up)
    await until_workflow(app.client, "ui-failed", lambda w: w["status"] == "failed")
    await until_workflow(app.client, "ui-markup", lambda w: w["status"] == "succeeded")

    await open_page(page, f"{app.base_url}/ui")
    await page.click('#filters button[data-status="failed"]')
    await expect(page.locator("#workflow-rows tr")).to_have_count(1)
    failed = row(page, "ui-failed")
    await expect(failed.locator(".badge")).to_have_text("failed")
    await expect(failed.locator(".row-error")).to_contain_text("fake failure 400")
    await expect(failed.locator(".query-text")).to_have_text(failing)
    await page.screenshot(path=screenshots("list-failed"), full_page=True)

    await failed.locator("a").click()
    await expect(page.locator("#detail-status")).to_have_text("failed")
    await expect(page.locator("#detail-error-card")).to_be_visible()
    await expect(page.locator("#detail-error")).to_contain_text("fake failure 400")
    await expect(page.locator("#detail-output")).to_have_text("(no output)")
    await expect(page.locator("#detail-timeline")).to_contain_text("failed")
    await expect(page.locator('#promise-rows tr[data-promise="agent_response"]')).to_contain_text(
        "rejected"
    )
    await page.screenshot(path=screenshots("detail-failed"), full_page=True)

    await page.goto(f"{app.base_url}/ui/workflows/ui-markup")
    await expect(page.locator("#detail-output")).to_have_text(
        "<script>window.injected = 'output'</script><b>not bold</b>"
    )
    assert await page.locator("#detail-output b, #detail-output script").count() == 0
    assert await page.evaluate("window.injected") is None


@needs_chromium
async def test_cancel_and_plain_errors_from_the_page(
    start_app: StartApp,
    fake_llm: FakeLLM,
    page: Page,
    screenshots: Callable[[str], Path],
) -> None:
    app = await start_app()
    query = "A long task to cancel"
    fake_llm.hold(query)
    await app.client.post("/workflows/ui-cancel/run/send", json=query)
    await open_page(page, f"{app.base_url}/ui")

    await page.fill("#start-key", "ui-cancel")
    await page.fill("#start-query", "another input for the same key")
    await page.click("#start-form button[type=submit]")
    await expect(page.locator("#start-result")).to_contain_text("409 key_conflict")
    await page.fill("#start-key", "not a key!")
    await page.click("#start-form button[type=submit]")
    await expect(page.locator("#start-result")).to_contain_text("422 invalid_key")
    await page.fill("#start-key", "ui-blank")
    await page.fill("#start-query", "   ")
    await page.click("#start-form button[type=submit]")
    await expect(page.locator("#start-result")).to_contain_text("must not be empty")
    await page.screenshot(path=screenshots("list-errors"), full_page=True)

    await page.fill("#search-key", "no-such-workflow")
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#search-result")).to_contain_text("No workflow no-such-workflow")
    await page.fill("#search-key", "ui-cancel")
    await page.click("#search-form button[type=submit]")
    await expect(page).to_have_url(f"{app.base_url}/ui/workflows/ui-cancel")
    await expect(page.locator("#detail-status")).to_have_text("running")
    await page.click("#cancel-button")
    await expect(page.locator("#detail-result")).to_contain_text("Cancelled ui-cancel")
    await expect(page.locator("#detail-status")).to_have_text("cancelled")
    await expect(page.locator('#promise-rows tr[data-promise="agent_response"]')).to_contain_text(
        "rejected"
    )
    await expect(page.locator("#cancel-button")).to_be_hidden()
    assert await not_reloaded(page)
    await page.go_back()
    await expect(row(page, "ui-cancel").locator(".badge")).to_have_text("cancelled")


@needs_chromium
async def test_filter_search_and_pages(
    start_app: StartApp,
    page: Page,
    screenshots: Callable[[str], Path],
) -> None:
    app = await start_app()
    for number in range(30):
        key = f"ui-page-{number:02d}"
        response = await app.client.post(f"/workflows/{key}/run/send", json=f"question {number}")
        assert response.status_code == 202
    await until_workflow(app.client, "ui-page-29", lambda w: w["status"] == "succeeded")

    await open_page(page, f"{app.base_url}/ui")
    rows = page.locator("#workflow-rows tr")
    await expect(rows).to_have_count(25)
    await expect(rows.first).to_have_attribute("data-key", "ui-page-29")
    await expect(page.locator("#page-newer")).to_be_disabled()
    await page.click("#page-older")
    await expect(rows).to_have_count(5)
    await expect(rows.first).to_have_attribute("data-key", "ui-page-04")
    await expect(page.locator("#page-label")).to_have_text("Page 2")
    await expect(page.locator("#page-older")).to_be_disabled()
    await page.screenshot(path=screenshots("list-page-2"), full_page=True)
    await page.click("#page-newer")
    await expect(rows).to_have_count(25)

    # The search asks the service for the keys that start with what was typed: on every page.
    await page.fill("#search-key", "ui-page-0")
    await expect(rows).to_have_count(10)
    await expect(rows.first).to_have_attribute("data-key", "ui-page-09")
    await expect(rows.last).to_have_attribute("data-key", "ui-page-00")  # was on page 2
    await page.fill("#search-key", "ui-page-02")
    await page.press("#search-key", "Enter")
    await expect(rows).to_have_count(1)
    await expect(row(page, "ui-page-02")).to_be_visible()
    await page.screenshot(path=screenshots("list-search"), full_page=True)
    # Pages of a search; a new search starts again at its first page.
    await page.fill("#search-key", "ui-page-")
    await expect(rows).to_have_count(25)
    await page.click("#page-older")
    await expect(page.locator("#page-label")).to_have_text("Page 2")
    await expect(rows).to_have_count(5)
    await expect(rows.first).to_have_attribute("data-key", "ui-page-04")
    await page.fill("#search-key", "ui-page-1")
    await expect(page.locator("#page-label")).to_have_text("Page 1")
    await expect(rows).to_have_count(10)
    # Combined with the state filter, and kept live: a new match shows up, others do not.
    await page.click('#filters button[data-status="succeeded"]')
    await page.fill("#search-key", "ui-late")
    await expect(page.locator("#list-empty")).to_have_text(
        'No succeeded workflows with a key starting with "ui-late".'
    )
    await app.client.post("/workflows/zz-late/run/send", json="not a match")
    await app.client.post("/workflows/ui-late/run/send", json="a match")
    await expect(rows).to_have_count(1)
    await expect(row(page, "ui-late").locator(".badge")).to_have_text("succeeded")
    await expect(row(page, "zz-late")).to_have_count(0)
    await page.click('#filters button[data-status=""]')
    # What no key can start with is refused, as the API says it.
    await page.fill("#search-key", "ui page")
    await expect(page.locator("#search-result")).to_contain_text("422 invalid_key_prefix")
    await page.fill("#search-key", "")
    await expect(page.locator("#search-result")).to_have_text("")
    await expect(rows).to_have_count(25)
    await page.click('#filters button[data-status="running"]')
    await expect(page.locator("#list-empty")).to_have_text("No running workflows.")
    await page.click('#filters button[data-status="succeeded"]')
    await expect(rows).to_have_count(25)
    assert await not_reloaded(page)


@needs_chromium
async def test_with_api_tokens_the_page_asks_for_one_and_stays_live(
    start_app: StartApp,
    fake_llm: FakeLLM,
    page: Page,
    screenshots: Callable[[str], Path],
) -> None:
    app = await start_app(api_tokens="ui-secret")
    query = "A question behind a token"
    release = fake_llm.hold(query)
    headers = {"Authorization": "Bearer ui-secret"}
    await app.client.post("/workflows/ui-token/run/send", json=query, headers=headers)
    streams = await open_page(page, f"{app.base_url}/ui")
    await expect(page.locator("#banner")).to_contain_text("needs an API token")
    await page.screenshot(path=screenshots("token-needed"), full_page=True)

    await page.fill("#token-input", "wrong-token")
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#banner")).to_contain_text("refused the API token")
    await page.fill("#token-input", "ui-secret")
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(row(page, "ui-token").locator(".badge")).to_have_text("running")
    # The stream carries the token in a header (fetch, not EventSource).
    await expect(page.locator("#live-note")).to_contain_text("following 1")

    release.set()
    await expect(row(page, "ui-token").locator(".badge")).to_have_text("succeeded")
    assert any(url.endswith("/workflows/ui-token/events") for url in streams), streams
    # The token lives in the tab's session storage, never in the address.
    assert await page.evaluate("sessionStorage.getItem('agent-notify.token')") == "ui-secret"
    assert "ui-secret" not in page.url
    # /metrics answered with the token too.
    await expect(page.locator("#stats")).to_have_attribute("data-state", "ok")
    assert await not_reloaded(page)


PHONE = {"width": 390, "height": 844}


async def page_width(page: Page) -> int:
    """How wide the page's content is: beyond the viewport, the page scrolls sideways."""
    width = await page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    )
    return int(width)


@needs_chromium
async def test_the_dashboard_fits_a_phone(
    start_app: StartApp,
    fake_llm: FakeLLM,
    browser: Browser,
    screenshots: Callable[[str], Path],
) -> None:
    app = await start_app()
    # What widens a page: long keys, queries, addresses, errors, Message-IDs and promise values.
    key = "phone-" + "a-rather-long-key-" * 4
    query = "Summarise the quarterly report for the board, " * 6
    email = "someone.with.a.rather.long.address@subdomain.example.com"
    await app.client.post(f"/workflows/{key}/on_notify/send", json=email)
    await app.client.post(f"/workflows/{key}/run/send", json=query)
    fake_llm.fail("fails on a phone", 400)
    await app.client.post("/workflows/phone-failed/run/send", json="fails on a phone")
    await until_workflow(app.client, key, all_sent)
    await app.client.post(
        f"/workflows/{key}/on_notify/send", json={"email": email, "promise": "approval"}
    )
    await app.client.post(
        f"/workflows/{key}/promises/approval/resolve",
        json={"value": {"approved": True, "reviewer": "x" * 80, "notes": ["y" * 60] * 3}},
    )
    await until_workflow(app.client, key, lambda w: all_sent(w) and len(w["subscriptions"]) == 2)
    await until_workflow(app.client, "phone-failed", lambda w: w["status"] == "failed")

    context = await browser.new_context(
        viewport=PHONE, device_scale_factor=3, is_mobile=True, has_touch=True
    )
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{app.base_url}/ui")
        await expect(row(page, key).locator(".badge")).to_have_text("succeeded")
        await expect(row(page, "phone-failed").locator(".badge")).to_have_text("failed")
        await page.screenshot(path=screenshots("phone-list"), full_page=True)
        assert await page_width(page) <= PHONE["width"]

        await page.goto(f"{app.base_url}/ui/workflows/{key}")
        await expect(page.locator("#detail-status")).to_have_text("succeeded")
        await expect(subscription(page, email).first.locator(".badge")).to_have_text("sent")
        await expect(page.locator('#promise-rows tr[data-promise="approval"]')).to_contain_text(
            "resolved"
        )
        await page.screenshot(path=screenshots("phone-detail"), full_page=True)
        assert await page_width(page) <= PHONE["width"]

        await page.goto(f"{app.base_url}/ui/workflows/phone-failed")
        await expect(page.locator("#detail-error-card")).to_be_visible()
        assert await page_width(page) <= PHONE["width"]
        assert not errors, f"the page's script failed: {errors}"
    finally:
        await context.close()


async def test_the_api_docs_page_needs_nothing_from_elsewhere(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    for asset, media_type in (
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
    ):
        response = await client.get(f"/static/swagger-ui/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(media_type), asset


@needs_chromium
async def test_the_api_docs_render_in_the_browser_from_the_service_alone(
    start_app: StartApp, page: Page, screenshots: Callable[[str], Path]
) -> None:
    app = await start_app()
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(app.base_url) else elsewhere.append(request.url)
        ),
    )
    await page.goto(f"{app.base_url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("agent-notify")
    await expect(page.locator("#operations-workflows-workflows_run_send")).to_be_visible()
    await page.screenshot(path=screenshots("api-docs"))
    assert elsewhere == [], f"the docs page loaded from elsewhere: {elsewhere}"


@needs_chromium
async def test_a_paused_model_shows_in_the_header(start_app: StartApp, page: Page) -> None:
    app = await start_app()
    await open_page(page, f"{app.base_url}/ui")
    await expect(page.locator("#stat-paused")).to_be_hidden()
    # What a provider's 429 with Retry-After does (tests/integration/test_flow.py): a pause.
    await app.app.state.process.flow.pause("openai/fake-model", 120)
    # The strip samples /metrics every 5 s.
    await expect(page.locator("#stat-paused-models")).to_contain_text(
        "openai/fake-model", timeout=SHOWN_WITHIN_MS
    )
    await expect(page.locator("#stat-paused")).to_be_visible()


@needs_chromium
async def test_a_workflow_page_shows_the_runs_steps_live_with_tokens_and_durations(
    start_app: StartApp,
    fake_llm: FakeLLM,
    page: Page,
    screenshots: Callable[[str], Path],
) -> None:
    app = await start_app(agent_tools="app.agent.examples")
    query = "Add, then answer"
    fake_llm.script_turns(
        query,
        ToolCalls(Call("add", {"a": 2, "b": 3}), usage=Usage(12, 5)),
        Text("five", usage=Usage(20, 2)),
    )
    release = fake_llm.hold_turn(query, 1)
    assert (await app.client.post("/workflows/ui-steps/run/send", json=query)).status_code == 202
    await open_page(page, f"{app.base_url}/ui/workflows/ui-steps")
    timeline = page.locator("#detail-timeline")
    step = lambda seq: timeline.locator(f'li[data-step="{seq}"]')  # noqa: E731
    await expect(step(0)).to_contain_text("model turn")
    await expect(step(0)).to_contain_text("12 in / 5 out tokens")
    await expect(step(1)).to_contain_text("tool add")
    await expect(step(1)).to_have_attribute("data-state", "succeeded")
    await expect(step(2)).to_have_attribute("data-state", "running")
    await expect(step(2)).to_contain_text("in flight")
    await expect(page.locator("#detail-usage")).to_have_text("12 in / 5 out tokens")
    await page.screenshot(path=screenshots("detail-steps-running"), full_page=True)

    release.set()
    await expect(page.locator("#detail-status")).to_have_text("succeeded")
    await expect(step(2)).to_have_attribute("data-state", "succeeded")
    await expect(step(2)).to_contain_text(re.compile(r"took [0-9.]+ s, 20 in / 2 out tokens"))
    await expect(page.locator("#detail-usage")).to_have_text("32 in / 7 out tokens")
    await page.screenshot(path=screenshots("detail-steps"), full_page=True)
