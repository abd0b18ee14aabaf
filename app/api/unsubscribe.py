"""One-click unsubscribe (RFC 8058) by the signed link in an email's List-Unsubscribe header.

Public (no API token: the link's signature is the authority). `GET` shows a page with a button
and decides nothing, since mail scanners open links; `POST` (a mail client's one-click
`List-Unsubscribe=One-Click`, or the page's form) cancels the subscription. Answers are JSON,
or a small page when the client asks for HTML (Accept); the page needs no JavaScript.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from app.api.deps import service_of
from app.api.errors import error_responses
from app.db.rows import SubscriptionRow
from app.errors import InvalidToken, NotFound
from app.states import SubscriptionState

router = APIRouter(tags=["unsubscribe"])

TokenPath = Annotated[
    str, Path(min_length=1, max_length=256, description="the signed token of the email's link")
]

# Public paths: no 401. A 403 or 404 is a page when the client asked for HTML.
RESPONSES = {
    status: response
    for status, response in error_responses("invalid_token", "not_found", "invalid_request").items()
    if status != 401
}

# The page holds a form posting to itself and nothing else: no script, style or image, no
# referrer (its address carries the token), never cached or indexed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, responses=RESPONSES)
async def unsubscribe_page(request: Request, token: TokenPath) -> Response:
    """A page that asks before unsubscribing (a POST); opening it changes nothing."""
    try:
        subscription = await service_of(request).unsubscribing.subscription(token)
    except (InvalidToken, NotFound) as exc:
        return _page(exc.status_code, exc.message)
    if subscription.status.finished:
        return _page(200, _state_of(subscription, changed=False))
    return _page(
        200,
        f"Stop the notification about the agent task {subscription.workflow_key}?",
        form=True,
    )


@router.post("/unsubscribe/{token}", responses=RESPONSES)
async def unsubscribe(request: Request, token: TokenPath) -> Response:
    """Cancel the subscription the link names, unless its notification was already sent;
    idempotent. 403 `invalid_token` for a forged, changed or expired link."""
    wants_html = "text/html" in request.headers.get("accept", "")
    try:
        outcome = await service_of(request).unsubscribing.cancel(token)
    except (InvalidToken, NotFound) as exc:
        if wants_html:
            return _page(exc.status_code, exc.message)
        raise
    subscription = outcome.subscription
    message = _state_of(subscription, changed=outcome.changed)
    if wants_html:
        return _page(200, message)
    return JSONResponse(
        {
            "subscription_id": str(subscription.id),
            "workflow_key": subscription.workflow_key,
            "status": str(subscription.status),
            "cancelled": subscription.status is SubscriptionState.CANCELLED,
            "message": message,
        }
    )


def _state_of(subscription: SubscriptionRow, *, changed: bool) -> str:
    key = subscription.workflow_key
    if changed:
        return f"Unsubscribed: the notification about the agent task {key} will not be sent."
    if subscription.status is SubscriptionState.CANCELLED:
        return f"Already unsubscribed: the notification about the agent task {key} is not sent."
    if subscription.status is SubscriptionState.SENT:
        return (
            f"The notification about the agent task {key} was already sent; nothing more will "
            "be sent for it."
        )
    return (
        f"The notification about the agent task {key} has already ended "
        f"({subscription.status}); nothing more will be sent for it."
    )


def _page(status_code: int, message: str, *, form: bool = False) -> HTMLResponse:
    button = (
        '<form method="post"><button type="submit">Unsubscribe</button></form>\n' if form else ""
    )
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Unsubscribe · agent-notify</title></head>\n"
        f"<body><h1>agent-notify</h1>\n<p>{html.escape(message)}</p>\n{button}</body></html>\n"
    )
    return HTMLResponse(document, status_code=status_code, headers=PAGE_HEADERS)
