"""Without API_TOKENS the app answers only requests that reach it on a loopback address, however
it is served (under plain uvicorn nothing checks the address it binds)."""

from __future__ import annotations

import httpx
import pytest

from app.addresses import is_loopback
from app.config import Settings
from app.main import create_app


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def status_on(settings: Settings, base_url: str) -> httpx.Response:
    # The ASGI scope's `server` is the URL's host: the address the request came to.
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        return await client.get("/no-such-page")


async def test_a_request_to_another_address_is_refused_without_tokens() -> None:
    response = await status_on(Settings(), "http://10.0.0.5")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "unauthenticated_exposure"
    assert "API_TOKENS" in error["message"]
    assert "ALLOW_UNAUTHENTICATED=true" in error["message"]


@pytest.mark.parametrize(
    ("settings", "base_url"),
    [
        (Settings(), "http://127.0.0.1"),
        (Settings(api_tokens="a-token"), "http://10.0.0.5"),
        (Settings(allow_unauthenticated=True), "http://10.0.0.5"),
    ],
    ids=["loopback", "with tokens", "allowed unauthenticated"],
)
async def test_otherwise_the_request_reaches_the_app(settings: Settings, base_url: str) -> None:
    response = await status_on(settings, base_url)
    assert response.status_code in (401, 404)  # the token check or the router: not refused
